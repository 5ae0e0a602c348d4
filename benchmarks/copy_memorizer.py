"""Real copies from an overtrained generator (issue 15): ground truth by exhaustive aligned search, then the gate.

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/copy_memorizer.py [--dataset pneumonia] [--part report]
        [--memorize 300] [--epochs 300] [--noise 0.3] [privacy overrides...]

The generator is :func:`~synthgen.privacy.plant.memorizing_generator` (a small conditional autoencoder) trained
on the first ``--memorize`` images of the benchmark's training set (:mod:`benchmarks.copy_detection` roles, so
the audit's training set holds ``--memorize`` memorized images among 1,200 / 3,000); its cohort is one sample
per memorized image (decoded latent + noise) plus ``--clean`` real unseen images (a generator's non-copies).

Ground truth, independent of the detector's shortlists: every sample and every holdout image is aligned with
**every** training image (the same grid search and continuous refinement of its 3 best, but no candidate
lists: :func:`exhaustive_best`). A sample is *memorized* when its best exhaustive Pearson exceeds the largest
that any real unseen holdout image reaches against the training set (``max_H``): no unseen patient is that
close to training data. Reported: the generator's training time, the number memorized, the share of them the
audit flags (target >= 95%), the clean images flagged, and whether the gate fails (it must).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.copy_detection import FILES, image_set, medmnist_roles, wilson  # noqa: E402
from synthgen.io import write_json  # noqa: E402
from synthgen.privacy.pixel import aligned_scores, warp_grid  # noqa: E402
from synthgen.privacy.plant import memorized_samples, memorizing_generator  # noqa: E402
from synthgen.privacy.refine import RefineSettings, refine_pairs  # noqa: E402


def exhaustive_best(queries01: np.ndarray, train01: np.ndarray, mats,
                    chunk: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Best aligned Pearson of each query over *all* training images: grid search against every training image
    (in chunks of ``chunk`` candidates), then continuous refinement of the 3 best; ``(N,)`` score and index."""
    nq, nt = len(queries01), len(train01)
    best, idx = np.full((nq, 3), -2.0, np.float32), np.full((nq, 3), -1, np.int64)
    for a in range(0, nt, chunk):
        cand = np.broadcast_to(np.arange(a, min(nt, a + chunk)), (nq, min(nt, a + chunk) - a)).copy()
        r = aligned_scores(queries01, train01, cand, mats, ssim_top=3, batch=2)
        pool_i = np.concatenate([idx, r["top_index"]], 1)
        pool_s = np.concatenate([best, np.where(r["top_index"] >= 0, r["top_pearson"], -2.0)], 1)
        keep = np.argsort(-pool_s, 1, kind="stable")[:, :3]
        best, idx = np.take_along_axis(pool_s, keep, 1), np.take_along_axis(pool_i, keep, 1)
    ref = refine_pairs(queries01, train01, idx, RefineSettings(top=3))
    j = ref.argmax(1)
    return ref[np.arange(nq), j], idx[np.arange(nq), j]


def main() -> None:
    import torch

    from synthgen.privacy.audit import run_audit
    from synthgen.privacy.cli import default_privacy_config

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="pneumonia", choices=sorted(FILES))
    ap.add_argument("--part", default="report", choices=["tune", "report"])
    ap.add_argument("--memorize", type=int, default=300)
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--noise", type=float, default=0.3)
    ap.add_argument("--clean", type=int, default=500)
    ap.add_argument("--cache", default=str(REPO / "benchmarks" / "_work" / "copy_detection_cache"))
    ap.add_argument("--out", default=None)
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_args()
    torch.set_num_threads(1)
    cfg = default_privacy_config(list(a.overrides))
    roles = medmnist_roles(a.dataset, a.part, a.clean)
    train, hold = roles["train"], roles["holdout"]
    m = a.memorize
    t0, c0 = time.time(), time.process_time()
    model, mse = memorizing_generator(train.images[:m], train.labels[:m], epochs=a.epochs, seed=0)
    train_s, train_cpu = time.time() - t0, time.process_time() - c0
    samples = memorized_samples(model, train.images[:m], train.labels[:m], a.noise, 5)
    mats = warp_grid(list(cfg["pixel"]["rotations"]), list(cfg["pixel"]["scales"]),
                     bool(cfg["pixel"]["half_pixel_scales"]), tuple(train.images.shape[-2:]))
    t0 = time.time()
    s_best, s_idx = exhaustive_best(samples, train.images, mats)
    h_best, _ = exhaustive_best(hold.images, train.images, mats)
    gt_s = time.time() - t0
    max_h = float(h_best.max())
    memorized = s_best > max_h
    clean = roles["negatives"]
    syn = image_set(np.concatenate([samples, clean.images]), np.r_[train.labels[:m], clean.labels], "g")
    res = run_audit(train, hold, syn, cfg, cache_dir=a.cache, reference=roles["reference"])
    f_mem = res.flags[:m][memorized]
    k = int(f_mem.sum())
    out = {"dataset": a.dataset, "part": a.part, "memorize": m, "epochs": a.epochs, "noise": a.noise,
           "generator_train_s": train_s, "generator_train_cpu_s": train_cpu, "generator_mse": mse,
           "ground_truth_s": gt_s, "holdout_max_exhaustive_pearson": max_h,
           "memorized": int(memorized.sum()), "memorized_source_is_own": float((s_idx[memorized] ==
                                                                                np.arange(m)[memorized]).mean()),
           "memorized_flagged": k, "recall": k / max(1, int(memorized.sum())),
           "recall_ci": wilson(k, int(memorized.sum())),
           "not_memorized_flagged": int(res.flags[:m][~memorized].sum()), "not_memorized": int((~memorized).sum()),
           "clean_flagged": int(res.flags[m:].sum()), "clean": len(clean),
           "gate_passed": bool(res.passed), "failed_gates": [g for g, v in res.gates.items() if not v["passed"]],
           "overrides": list(a.overrides)}
    print(f"{a.dataset}/{a.part}: generator {m} images x {a.epochs} epochs, {train_s:.0f} s ({train_cpu:.0f} CPU s), "
          f"MSE {mse:.4f}; ground truth {gt_s:.0f} s, holdout max exhaustive Pearson {max_h:.4f}")
    print(f"memorized {out['memorized']}/{m} (matched own source {out['memorized_source_is_own']:.1%}); flagged "
          f"{k}/{out['memorized']} = {out['recall']:.1%} (CI {out['recall_ci'][0]:.1%}-{out['recall_ci'][1]:.1%}); "
          f"not-memorized samples flagged {out['not_memorized_flagged']}/{out['not_memorized']}; clean flagged "
          f"{out['clean_flagged']}/{len(clean)}; gate {'PASSED' if res.passed else 'failed'} {out['failed_gates']}")
    if a.out:
        write_json(a.out, out)


if __name__ == "__main__":
    main()
