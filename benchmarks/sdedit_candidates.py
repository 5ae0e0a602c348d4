"""Rare-class candidates edited from the class's real training images (SDEdit, as in DA-Fusion), for comparison
with the generator's own samples in the evaluate stage's raw arm (docs/boost.md, session 9).

SDEdit (Meng et al. 2022; DA-Fusion, Trabucco et al. 2024, for few-shot augmentation): take a real image ``x0``
of class ``c`` (after a recorded transform the data declare, ``--symmetries``: ``rot`` quarter turns, then a
horizontal ``flip``; none by default), noise it
to timestep ``t0 = max{t_k <= strength * T}`` of the 50-step trailing grid (:func:`trailing_timesteps`),

    x_t0 = a_t0 * x0 + s_t0 * eps,   eps = seeded_noise(seed)

and integrate back to ``t = 0`` with deterministic DDIM (eta 0) under class ``c`` at classifier-free guidance
``g``. ``strength`` in ``(0, 1]``: near 0 the output is the source image, at 1 a fresh sample. Every random
quantity (source index, rotation, flip, noise seed) is drawn first from ``--seed`` and stored with the images.

An edited image derives from one patient's image. Privacy: the privacy stage's copy detection judges each one
like any candidate; this benchmark ships nothing, it writes a cohort for ``evaluate.raw_cohort``:

    python benchmarks/sdedit_candidates.py --run RUN --class basophil --n 400 --strength 0.5 --out RUN/sd0.5 \
        --symmetries hflip vflip rot90
    python pipelines/evaluate.py ... evaluate.raw_cohort=RUN/sd0.5/cohort.npz

``RUN``: a pipeline folder with ``models/generator.ckpt`` (a diffusion model) and ``data/prepared``.
Writes ``OUT/cohort.npz`` (``images`` uint8/uint16 like the prepared data, ``labels``, ``source``, ``rot``,
``flip``, ``seeds``) and ``OUT/cohort.json`` (``class_names``, settings).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from synthgen.data.prepared import load_split
from synthgen.data.symmetries import parse_symmetries
from synthgen.data.transforms import dequantize, quantize
from synthgen.io import write_json
from synthgen.models.checkpoints import load_generator
from synthgen.sampling.ddim import ddim_coefficients, trailing_timesteps
from synthgen.sampling.guidance import guided_denoiser
from synthgen.sampling.noise import seeded_noise

GRID = 50  # the trailing timestep grid the edit starts on and integrates along


def edit_params(n_sources: int, n: int, seed: int, symmetries: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Recorded parameters of ``n`` edits: ``source`` (cycles through the ``n_sources`` real images, so each is
    used ``n / n_sources`` times), ``rot`` in ``0..3`` and ``flip`` in ``{0, 1}`` (drawn from ``seed``; kept only
    where the data declare ``rot90`` / ``hflip``, else 0: a chest X-ray must not be mirrored), ``seeds`` (noise
    seed of edit ``i``: ``10000 (seed + 1) + i``), all int64."""
    rng = np.random.default_rng(seed)
    rot, flip = rng.integers(0, 4, n), rng.integers(0, 2, n)
    return {"source": np.arange(n, dtype=np.int64) % n_sources, "rot": rot * ("rot90" in symmetries),
            "flip": flip * ("hflip" in symmetries), "seeds": np.arange(n, dtype=np.int64) + 10_000 * (seed + 1)}


def sdedit(model, images01: torch.Tensor, label: int, params: dict[str, np.ndarray], strength: float,
           guidance: float = 1.0, batch: int = 256) -> torch.Tensor:
    """Edited images ``(N, C, H, W)`` float32 in ``[0, 1]`` of ``images01`` ``(M, C, H, W)`` in ``[0, 1]`` (the
    class's real images) with a diffusion ``model`` (see the module docstring); ``N = len(params['source'])``."""
    if not 0.0 < strength <= 1.0:
        raise SystemExit(f"error: --strength must be in (0, 1], got {strength}")
    T = int(model.schedule.num_timesteps)
    steps = [t for t in trailing_timesteps(T, GRID) if t <= strength * T] or [trailing_timesteps(T, GRID)[-1]]
    ab = model.schedule.alphas_cumprod
    net = model.ema_net.eval()
    out = []
    with torch.no_grad():
        for lo in range(0, len(params["source"]), batch):
            sl = slice(lo, lo + batch)
            x = images01[torch.as_tensor(params["source"][sl])].clone()
            for i, (r, f) in enumerate(zip(params["rot"][sl], params["flip"][sl])):
                x[i] = torch.rot90(x[i], int(r), dims=(-2, -1))
                x[i] = x[i].flip(-1) if f else x[i]
            seeds = torch.as_tensor(params["seeds"][sl])
            x0 = model.images_to_x0(x)
            xt = model.schedule.add_noise(x0, seeded_noise(seeds, x0.shape[1:], stream=0),
                                          torch.full((len(x),), steps[0], dtype=torch.long)).float()
            labels = torch.full((len(x),), int(label), dtype=torch.long)
            denoise = guided_denoiser(lambda a, t, y: model._predict(net, a, t, y), labels, model.null_label,
                                      guidance)
            for k, t in enumerate(steps):
                ab_p = ab[steps[k + 1]] if k + 1 < len(steps) else torch.ones((), dtype=torch.float64)
                c_x0, c_eps, _ = (float(c) for c in ddim_coefficients(ab[t], ab_p, 0.0))
                tt = torch.full((len(x),), t, dtype=torch.long)
                o = denoise(xt, tt).float()
                xt = c_x0 * model.schedule.predict_x0(xt, o, tt) + c_eps * model.schedule.predict_eps(xt, o, tt)
            out.append(model.x0_to_images(xt).clamp(0, 1))
    return torch.cat(out)


def write_sdedit_cohort(run: Path, cls_name: str, n: int, strength: float, out: Path, guidance: float = 1.0,
                        seed: int = 0, symmetries: tuple[str, ...] = ()) -> dict:
    """Write ``out/cohort.npz`` and ``out/cohort.json``; return the settings recorded in the JSON."""
    model, _ = load_generator(run / "models" / "generator.ckpt")
    if not hasattr(model, "schedule"):
        raise SystemExit(f"error: {run / 'models' / 'generator.ckpt'}: not a diffusion model (SDEdit needs one)")
    train = load_split(run / "data" / "prepared", "train", as_float=False)
    if cls_name not in train.class_names:
        raise SystemExit(f"error: --class {cls_name!r} is not a class of {run}; classes: {train.class_names}")
    c = train.class_names.index(cls_name)
    real = train.images[train.labels == c]
    params = edit_params(len(real), n, seed, parse_symmetries(list(symmetries)))
    img = sdedit(model, torch.from_numpy(dequantize(real)), c, params, strength, guidance).numpy()
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "cohort.tmp.npz"
    np.savez(tmp, images=quantize(img, str(real.dtype)), labels=np.full(n, c, dtype=np.int64), **params)
    tmp.replace(out / "cohort.npz")
    info = {"class_names": list(train.class_names), "source": f"SDEdit of the real {cls_name} training images",
            "class": cls_name, "n": n, "n_real": int(len(real)), "strength": strength, "guidance": guidance,
            "seed": seed, "grid": GRID, "symmetries": list(parse_symmetries(list(symmetries)))}
    write_json(out / "cohort.json", info)
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--class", dest="cls", required=True)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--strength", type=float, required=True)
    ap.add_argument("--guidance", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--symmetries", nargs="*", default=[],
                    help="the data's declared symmetries (data.symmetries), e.g. hflip vflip rot90; none: no transform")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    info = write_sdedit_cohort(a.run, a.cls, a.n, a.strength, a.out, a.guidance, a.seed, tuple(a.symmetries))
    print(f"{a.out / 'cohort.npz'}: {a.n} edits of {info['n_real']} real {a.cls} images, strength {a.strength}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
