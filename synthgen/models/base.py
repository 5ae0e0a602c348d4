"""The generator API every model implements: (class, seed) -> image.

Following TorchIO's rule (sample every random quantity into recorded parameters, then apply them
deterministically), a synthetic sample is fully described by its class label and an integer seed. All noise a
model draws for sample ``i`` comes from a ``torch.Generator`` seeded with ``seeds[i]``, so each sample can be
regenerated alone, in any batch, on any number of devices.
"""

from __future__ import annotations

from typing import Any, Sequence

import lightning as L
import torch


def seeded_noise(seeds: torch.Tensor, shape: Sequence[int], device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32, stream: int = 0) -> torch.Tensor:
    """Standard normal noise ``(N, *shape)``, row ``i`` drawn from a CPU generator seeded by
    ``(seeds[i], stream)`` only (independent of batch composition and device).

    ``stream`` separates independent draws for one sample (e.g. the initial latent vs. the noise of sampler
    step ``k``): generator seed = ``seeds[i] * 1_000_003 + stream``.
    """
    rows = []
    for s in seeds.tolist():
        g = torch.Generator(device="cpu").manual_seed(int(s) * 1_000_003 + int(stream))
        rows.append(torch.randn(tuple(shape), generator=g, dtype=torch.float32))
    out = torch.stack(rows) if rows else torch.empty((0, *shape))
    return out.to(device=device, dtype=dtype)


class GeneratorModule(L.LightningModule):
    """Base class of class-conditional generators.

    Subclasses set ``self.class_names`` (label order) and ``self.image_shape`` ``(C, H, W)`` and implement
    :meth:`generate`. ``trainer.predict`` on a dataset of ``{"labels", "seeds"}`` batches calls it, which is
    how generation spreads over devices (each rank gets disjoint seeds exactly once).
    """

    class_names: list[str]
    image_shape: tuple[int, int, int]
    #: keyword arguments for :meth:`generate` used by :meth:`predict_step` (set by the generate stage).
    sampling_kwargs: dict[str, Any]

    def generate(self, labels: torch.Tensor, seeds: torch.Tensor, **sampling: Any) -> torch.Tensor:
        """Images for ``labels`` ``(N,)`` int64 and ``seeds`` ``(N,)`` int64.

        Returns:
            ``(N, C, H, W)`` float32 in ``[0, 1]`` on CPU; row ``i`` depends only on
            ``(labels[i], seeds[i], sampling, weights)``.
        """
        raise NotImplementedError

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        images = self.generate(batch["labels"], batch["seeds"], **getattr(self, "sampling_kwargs", {}))
        return {"images": images.cpu(), "labels": batch["labels"].cpu(), "seeds": batch["seeds"].cpu(),
                "index": batch["index"].cpu()}
