"""Per-sample seeded noise: the one source of every random draw a sample's generation makes.

A synthetic sample is described by its class label and an integer seed (see :mod:`synthgen.models.base`); the
samplers here and the models' latents draw from this function, so a sample depends only on its own seed.
"""

from __future__ import annotations

from typing import Sequence

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
