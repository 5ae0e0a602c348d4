"""Benchmark case ``sampling``: images/s and Frechet distance of the diffusion samplers from ONE checkpoint.

Samplers (``synthgen.sampling``): DDPM 1000 steps (ancestral; the reference), DDIM 50, DPM-Solver++(2M) 20
and 10 steps, all with guidance 1 (one network call per step), on the same ``n`` (label, seed) pairs: labels
``i % K`` (class-balanced), seeds ``10_000 + i``.

* images/s: each sampler generates its ``n`` images in 4 equal chunks after an untimed 2-step warm-up; a
  chunk is one repeat (a row depends only on its label and seed, so chunking changes no image); median and
  spread over the chunks. Clock: CPU seconds of this process (1 torch thread unless
  ``$SYNTHGEN_BENCH_THREADS``), wall seconds on a GPU.
* Frechet distance in the evaluate stage's features (:mod:`benchmarks.fixtures`: the domain classifier
  trained on the real training split, cached) between the ``n`` quantized (uint8) samples and the real test
  split. FD is biased upwards at small ``n``, so every sampler is scored at the same ``n`` and the
  real-vs-real floor is given at that ``n`` too (``n`` real training images vs the same test split; median
  over 5 seeded draws). Ratio = FD(DDPM 1000) / FD(sampler): >= 0.91 means within 10% of DDPM 1000.

Checkpoint: ``--checkpoint`` / ``$SYNTHGEN_BENCH_DDPM_CKPT`` (its ``data/prepared`` next to ``models/``), else a
small model trained in the run (:func:`benchmarks.fixtures.diffusion_model`). Cost: DDPM 1000 is ~1000
network calls per image, so ``n`` sets the case's length: ``n = 128`` by default (estimated 6-10 minutes on one
core of this 2-core CPU for the whole case, most of it DDPM 1000, from the quick runs' ~2-4 CPU s per DDPM-1000
image; not yet timed at full size), 8 in ``--quick``; ``$SYNTHGEN_BENCH_SAMPLING_N``
overrides it.
"""

from __future__ import annotations

import os

import numpy as np

from benchmarks import fixtures
from benchmarks.harness import Context, Row, Timing, cpu_clock, set_threads, sync

CASE = "sampling"
SAMPLERS = [("ddpm", 1000), ("ddim", 50), ("dpmpp", 20), ("dpmpp", 10)]
REFERENCE = "DDPM 1000"
CHUNKS = 4


def label(sampler: str, steps: int) -> str:
    return {"ddpm": "DDPM", "ddim": "DDIM", "dpmpp": "DPM-Solver++"}[sampler] + f" {steps}"


def sample_plan(n: int, k: int) -> tuple["torch.Tensor", "torch.Tensor"]:  # noqa: F821
    """``(labels, seeds)`` ``(n,)`` int64: class-balanced labels ``i % k`` and seeds ``10_000 + i``."""
    import torch

    i = torch.arange(n, dtype=torch.long)
    return i % k, i + 10_000


def timed_generate(model, labels, seeds, sampler: str, steps: int, device: str) -> tuple[np.ndarray, Timing]:
    """Images ``(n, C, H, W)`` float32 in [0, 1] and the per-chunk seconds (``CHUNKS`` chunks)."""
    clock = cpu_clock(device)
    out, secs = [], []
    for part in np.array_split(np.arange(len(labels)), CHUNKS):
        if len(part) == 0:
            continue
        t0 = clock()
        out.append(model.generate(labels[part], seeds[part], sampler=sampler, steps=steps).numpy())
        sync(device)
        secs.append((clock() - t0) / len(part))
    return np.concatenate(out), Timing(secs)


def fd_floor(extractor, prepared, n: int, f_test: np.ndarray, draws: int = 5) -> Timing:
    """FD of ``n`` real training images vs the test features, over ``draws`` seeded draws (as a Timing:
    median and spread)."""
    import torch

    from synthgen.data.prepared import load_split
    from synthgen.metrics.frechet import frechet_distance

    train = load_split(prepared, "train")
    vals = []
    for d in range(draws):
        idx = np.sort(np.random.default_rng(d).choice(len(train.images), n, replace=False))
        vals.append(frechet_distance(extractor(torch.from_numpy(train.images[idx]).float()), f_test))
    return Timing(vals)


def run(ctx: Context) -> list[Row]:
    import torch

    from synthgen.data.prepared import load_split
    from synthgen.data.transforms import dequantize, quantize
    from synthgen.metrics.frechet import frechet_distance

    threads = set_threads(ctx)
    n = int(os.environ.get("SYNTHGEN_BENCH_SAMPLING_N", 8 if ctx.quick else 128))
    model, origin = fixtures.diffusion_model(ctx)
    extractor = fixtures.feature_extractor(ctx)
    prepared = fixtures.prepared_blood(ctx)
    test = load_split(prepared, "test")
    f_test = extractor(torch.from_numpy(test.images).float())
    labels, seeds = sample_plan(n, len(model.class_names))
    model.generate(labels[:4], seeds[:4], sampler="dpmpp", steps=2)  # warm-up (allocator, oneDNN kernels)
    clock = "CPU" if not ctx.device.startswith("cuda") else "wall"
    common = (f"n={n} (labels i%K, seeds 10000+i), guidance 1, {threads} thread(s), {origin}; "
              f"FD vs {len(test.images)} real test images in evaluate features (dim {extractor.dim})")
    rows: list[Row] = []
    for sampler, steps in SAMPLERS:
        images, t = timed_generate(model, labels, seeds, sampler, steps, ctx.device)
        images = dequantize(quantize(images, "uint8"))  # what the generate stage stores
        fd = frechet_distance(extractor(torch.from_numpy(images)), f_test)
        name = label(sampler, steps)
        ref = None if name == REFERENCE else REFERENCE
        rows.append(Row(CASE, name, f"images/{clock} s", 1.0 / t.median, "img/s", t.spread, reference=ref,
                        note=f"{steps} network calls per image; {CHUNKS} chunks of ~{n // CHUNKS}; " + common,
                        extra={"seconds_per_image": t.samples, "n": n, "steps": steps}))
        rows.append(Row(CASE, name, f"FD (n={n})", fd, "", reference=ref, better="lower",
                        extra={"n": n, "checkpoint": origin}))
        print(f"   {name}: {1 / t.median:.3g} img/{clock}-s, FD {fd:.4g}", flush=True)
    floor = fd_floor(extractor, prepared, n, f_test)
    rows.append(Row(CASE, f"real train vs test (floor, n={n})", f"FD (n={n})", floor.median, "", floor.spread,
                    reference=REFERENCE, better="lower",
                    note="5 seeded draws of n real training images: the best any sampler can do at this n",
                    extra={"draws": floor.samples}))
    return rows
