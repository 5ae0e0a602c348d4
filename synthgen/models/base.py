"""The generator API every model implements: (class, seed) -> image.

Following TorchIO's rule (sample every random quantity into recorded parameters, then apply them
deterministically), a synthetic sample is fully described by its class label and an integer seed. All noise a
model draws for sample ``i`` comes from a ``torch.Generator`` seeded with ``seeds[i]``, so each sample can be
regenerated alone, in any batch, on any number of devices.

Training randomness follows the same rule (:meth:`GeneratorModule.training_generator`): every draw of training
batch ``b`` comes from CPU generators seeded by ``(seed, stream, b)``, where ``b`` counts the training batches
this module has started and is saved in, and restored from, every Lightning checkpoint. That counter is the
whole random state of training, so a run resumed from a checkpoint taken at any batch boundary draws exactly
what the uninterrupted run drew. The streams do not depend on the rank: under DDP every rank draws the values of
the whole global batch and keeps its own rows (:mod:`synthgen.models.distributed`), so ``W`` processes with
``B / W`` images each draw what one process with ``B`` images draws, and a checkpoint resumes on another process
count. Only torch's global RNG (UNet dropout) is reseeded per rank (``(seed, "global", rank, b)``).
"""

from __future__ import annotations

import hashlib
from typing import Any

import lightning as L
import torch

from ..sampling.noise import seeded_noise  # models draw their latents with it (imported from here too)


def stream_seed(seed: int, stream: str, rank: int, batch: int) -> int:
    """A 63-bit generator seed for draw ``stream`` of training batch ``batch`` on ``rank`` (a hash, so
    nearby arguments give unrelated streams)."""
    key = f"{int(seed)}/{stream}/{int(rank)}/{int(batch)}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1


#: checkpoint key of the training random state (:meth:`GeneratorModule.on_save_checkpoint`).
RNG_CHECKPOINT_KEY = "synthgen_training_rng"


class SeededModule(L.LightningModule):
    """A Lightning module whose training draws come from ``(seed, stream, rank, batch counter)`` (see the module
    docstring); the counter is checkpointed. The base of every trained synthgen model: the generators below
    and the latent autoencoder (:mod:`synthgen.models.autoencoder`)."""

    #: training batches started so far (the training random state; checkpointed).
    rng_batches: int = 0
    _rng_batch: int | None = None
    _rng_streams: dict[str, torch.Generator] | None = None

    # ---------------------------------------------------------------------------- training randomness
    @property
    def training_seed(self) -> int:
        """The config seed behind all training draws (the ``seed`` hyperparameter, 0 without one)."""
        return int(self.hparams.get("seed", 0) or 0)

    def training_generator(self, stream: str) -> torch.Generator:
        """The CPU generator of draw ``stream`` (e.g. ``"noise"``, ``"latent"``, ``"augment"``) for the current
        training batch, seeded by ``(training_seed, stream, batch counter)`` (rank 0's seed on every rank: draw
        for the global batch and keep this rank's rows, :func:`~synthgen.models.distributed.batch_slice`);
        repeated calls within a batch continue the same stream. Draw on CPU and move to the device: the values are then the same on
        every device type. Outside a training batch (no :meth:`on_train_batch_start` yet) the counter's current
        value is used."""
        if self._rng_streams is None:
            self._rng_streams = {}
        g = self._rng_streams.get(stream)
        if g is None:
            batch = self.rng_batches if self._rng_batch is None else self._rng_batch
            g = torch.Generator(device="cpu").manual_seed(
                stream_seed(self.training_seed, stream, 0, batch))
            self._rng_streams[stream] = g
        return g

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """Advance the batch counter and reseed torch's global RNG from it, so that layers drawing from the
        global RNG (dropout) are reproducible after a resume too. Subclasses that override this call super()."""
        self._rng_batch = self.rng_batches
        self.rng_batches += 1
        self._rng_streams = {}
        torch.manual_seed(stream_seed(self.training_seed, "global", self.global_rank, self._rng_batch))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[RNG_CHECKPOINT_KEY] = {"seed": self.training_seed, "batches": int(self.rng_batches)}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get(RNG_CHECKPOINT_KEY)
        if isinstance(state, dict):
            self.rng_batches = int(state.get("batches", 0))
            self._rng_batch, self._rng_streams = None, None


class GeneratorModule(SeededModule):
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
        kwargs = dict(getattr(self, "sampling_kwargs", {}))
        if "guidance" in batch and "guidance" in kwargs:  # one scale per batch (synthgen.stages.generate)
            kwargs["guidance"] = float(batch["guidance"][0])
        images = self.generate(batch["labels"], batch["seeds"], **kwargs)
        return {"images": images.cpu(), "labels": batch["labels"].cpu(), "seeds": batch["seeds"].cpu(),
                "index": batch["index"].cpu()}
