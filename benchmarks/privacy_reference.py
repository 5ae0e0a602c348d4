"""Cohort gates against real unseen data on a shifted split (issue 13): what the reference changes.

    nice -n 5 python benchmarks/privacy_reference.py [--data ../shared/data/pneumoniamnist_imbalanced.npz]
        [--gamma 1.3] [--holdout-sizes 1000,100] [--out benchmarks/_work/privacy_reference.json] [privacy overrides...]

Split (all from the source's ``train`` split, images with an exact duplicate inside it left out, seeded):
train ``T`` 1,200; holdout ``H`` 1,000 with a scanner-like intensity shift (``x ** gamma``, re-quantized);
reference ``R`` 500 and a clean cohort of 500 other real unseen, unshifted images. Cohorts:

* ``clean``: the 500 real unseen images (a generator that memorized nothing and matched the distribution);
* ``planted``: clean + 26 training images (~5%; 13 exact, 13 mild edits, :mod:`synthgen.privacy.plant`);
* ``memorizing``: an overtrained generator: :func:`~synthgen.privacy.plant.memorizing_generator` on 200
  training images for 40 epochs, one noisy-latent sample per image.

Each cohort is audited twice: with ``R`` as the reference (the gate), and without one (``synthgen audit``
without ``--reference``: a seeded half of the shifted ``H`` becomes the reference). The first table shows the
DCR shares, the two-proportion test and the former constant-0.5 rule (fail if share > 0.55 with binomial p <
0.05), and the distance-MIA AUC; the second the flagged shares of the cohort and of the reference (scored with
the same rules and thresholds), the flagged gate's limit and p-value, the former constant rule (fail if more
than 2% flagged) and the audit's wall time. Everything runs for each ``--holdout-sizes`` (default 1,000 and
100: per-sample thresholds calibrated on a small shifted holdout flag ~3% of real unseen images).
``tests/test_privacy_reference.py`` asserts the same splits' verdicts.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from synthgen.io import write_json  # noqa: E402
from synthgen.privacy.exact import image_hashes, quantize01  # noqa: E402
from synthgen.privacy.inputs import ImageSet  # noqa: E402
from synthgen.privacy.plant import memorized_samples, memorizing_generator, plant_copies  # noqa: E402

SIZES = {"train": 1200, "holdout": 1000, "reference": 500, "clean": 500}
FAST = ["embedding.steps=30", "embedding.batch_size=64", "pixel.prefilter_quantile=0"]


def image_set(x: np.ndarray, y: np.ndarray, name: str) -> ImageSet:
    """``ImageSet`` of float ``[0, 1]`` images, one patient per image (ids ``<name><i>``)."""
    return ImageSet(np.ascontiguousarray(x, np.float32), np.asarray(y, np.int64),
                    np.array([f"{name}{i}" for i in range(len(x))]), "uint8", name)


def shifted_split(npz: str | os.PathLike, gamma: float = 1.3, seed: int = 0,
                  sizes: dict[str, int] = SIZES) -> dict[str, ImageSet]:
    """``{train, holdout, reference, clean}`` from ``npz``'s ``train`` split (MedMNIST keys); the holdout's
    intensities are shifted to ``x ** gamma`` (re-quantized to 8 bits). Images with an exact duplicate in the
    split are left out (a native duplicate would sit on both sides)."""
    with np.load(npz) as z:
        x, y = z["train_images"], z["train_labels"].reshape(-1).astype(np.int64)
    x = (x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)).astype(np.float32) / 255
    _, inv, cnt = np.unique(image_hashes(quantize01(x)), return_inverse=True, return_counts=True)
    p = np.random.default_rng(seed).permutation(np.flatnonzero(cnt[inv] == 1))
    names = ("train", "holdout", "reference", "clean")
    parts = np.split(p, np.cumsum([sizes[k] for k in names]))[:4]
    out = {k: image_set(x[i], y[i], k[0]) for k, i in zip(names, parts)}
    shifted = np.rint(np.clip(out["holdout"].images ** gamma, 0, 1) * 255) / 255
    out["holdout"] = image_set(shifted, out["holdout"].labels, "h")
    return out


def planted_cohort(train: ImageSet, clean: ImageSet, n: int = 26, seed: int = 1) -> ImageSet:
    """``clean`` + ``n`` training images (half exact, half mild edits), appended after the clean rows."""
    idx = np.sort(np.random.default_rng(seed).choice(len(train), n, replace=False))
    h = n // 2
    planted = np.concatenate([plant_copies(train.images, idx[:h], "exact", seed)[0],
                              plant_copies(train.images, idx[h:], "mild", seed + 1)[0]])
    return image_set(np.concatenate([clean.images, planted]), np.r_[clean.labels, train.labels[idx]], "p")


def memorizing_cohort(train: ImageSet, n: int = 200, epochs: int = 40, seed: int = 0) -> tuple[ImageSet, float]:
    """One sample per image of an autoencoder overfit on ``train``'s first ``n`` images; and its last MSE."""
    model, mse = memorizing_generator(train.images[:n], train.labels[:n], epochs=epochs, seed=seed)
    return image_set(memorized_samples(model, train.images[:n], train.labels[:n], 0.3, seed + 5),
                     train.labels[:n], "m"), mse


def _row(name: str, mode: str, res, holdout: int, seconds: float) -> dict:
    d, f = res.stats["dcr"], res.gates["flagged_share"]
    old_fail = bool(d["share_syn"] > 0.55 and d["p_value_vs_half"] < 0.05)
    return {"cohort": name, "holdout": holdout, "reference": mode, "audit_s": seconds,
            "reference_scores_s": res.timings.get("reference_scores"),
            "flagged_share_ref": f["share_ref_matched"], "flagged_limit": f["limit"], "flagged_p_value": f["p_value"],
            "flagged_min_failing_share": f["min_failing_share"],
            "flagged_gate": "pass" if f["passed"] else "fail",
            "old_flagged_rule": "pass" if f["constant_rule_passed"] else "fail",
            "share_syn": d["share_syn"], "share_ref": d["share_ref_matched"],
            "difference": d["difference"], "p_value": d["p_value"], "p_value_vs_half": d["p_value_vs_half"],
            "old_dcr_rule": "fail" if old_fail else "pass",
            "dcr_gate": "pass" if res.gates["dcr"]["passed"] else "fail",
            "passed": res.passed, "failed_gates": [k for k, g in res.gates.items() if not g["passed"]],
            "flagged_share": res.stats["flagged_share"], "mia_auc": res.stats["mia"]["auc"],
            "mia_tpr_at_1pct_fpr": res.stats["mia"]["tpr_at_fpr"], "mia_control_auc": res.stats["mia_control"]["auc"]}


def main() -> None:
    import torch

    from synthgen.privacy.audit import run_audit
    from synthgen.privacy.cli import default_privacy_config

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    shared = Path(os.environ.get("SYNTHGEN_SHARED_DATA", REPO.parent / "shared" / "data"))
    ap.add_argument("--data", default=str(shared / "pneumoniamnist_imbalanced.npz"))
    ap.add_argument("--gamma", type=float, default=1.3)
    ap.add_argument("--holdout-sizes", type=lambda v: [int(x) for x in v.split(",")], default=[1000, 100],
                    help="holdout sizes to run (comma-separated; 100: thresholds from a small shifted holdout)")
    ap.add_argument("--cache", default=str(REPO / "benchmarks" / "_work" / "privacy_reference_cache"))
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "_work" / "privacy_reference.json"))
    ap.add_argument("overrides", nargs="*", help=f"privacy config overrides (default {' '.join(FAST)})")
    a = ap.parse_args()
    cfg = default_privacy_config(FAST + list(a.overrides))
    torch.set_num_threads(int(cfg.get("threads") or 1))
    rows, memo, mse = [], None, float("nan")
    for hold in a.holdout_sizes:
        s = shifted_split(a.data, a.gamma, sizes={**SIZES, "holdout": hold})
        if memo is None:          # the training part does not depend on the holdout size
            memo, mse = memorizing_cohort(s["train"])
        cohorts = {"clean": s["clean"], "planted": planted_cohort(s["train"], s["clean"]), "memorizing": memo}
        for name, syn in cohorts.items():
            for mode, ref in (("R (real unseen, unshifted)", s["reference"]), ("half of the shifted holdout", None)):
                t0 = time.time()
                res = run_audit(s["train"], s["holdout"], syn, cfg, cache_dir=a.cache, reference=ref)
                rows.append(_row(name, mode, res, hold, time.time() - t0))
    print("| holdout | cohort | reference | share_syn | share_ref | diff | p (new) | p vs 0.5 | old DCR rule | "
          "DCR gate | gate (all) | failed gates | MIA AUC | control AUC |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['holdout']} | {r['cohort']} | {r['reference']} | {r['share_syn']:.3f} | {r['share_ref']:.3f} | "
              f"{r['difference']:+.3f} | {r['p_value']:.2g} | {r['p_value_vs_half']:.2g} | {r['old_dcr_rule']} | "
              f"{r['dcr_gate']} | {'pass' if r['passed'] else 'fail'} | {', '.join(r['failed_gates']) or '-'} | "
              f"{r['mia_auc']:.3f} | {r['mia_control_auc']:.3f} |")
    print("\n| holdout | cohort | reference | flagged | flagged (ref, matched) | limit | p | old rule (> 2%) | "
          "flagged gate | fails from | audit s | reference scoring s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['holdout']} | {r['cohort']} | {r['reference']} | {r['flagged_share']:.2%} | "
              f"{r['flagged_share_ref']:.2%} | {r['flagged_limit']:.2%} | {r['flagged_p_value']:.2g} | "
              f"{r['old_flagged_rule']} | {r['flagged_gate']} | {r['flagged_min_failing_share']:.1%} | "
              f"{r['audit_s']:.1f} | {r['reference_scores_s']:.1f} |")
    write_json(a.out, {"data": a.data, "gamma": a.gamma, "sizes": SIZES, "holdout_sizes": a.holdout_sizes,
                       "memorizing_mse": mse, "config": cfg, "rows": rows})
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
