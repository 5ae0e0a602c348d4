"""Copy-detection benchmark (issue 15): composed edits on look-alike anatomy, TPR at 1% and 0.1% FPR with CIs.

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/copy_detection.py --dataset pneumonia --part report \
        [--per-cell 60] [--families rotscale,issue,...] [--png out.png] [privacy overrides...]

Datasets: ``pneumonia`` (PneumoniaMNIST, grayscale X-ray), ``blood`` (BloodMNIST, colour), ``phantom64`` and
``phantom128`` (the demo's phantoms, :mod:`synthgen.data.phantom`, rendered at 64 / 128 px; 3 views per patient).
``--part tune`` and ``--part report`` use disjoint images: MedMNIST sets split their train pool, val and test in
two halves by a fixed permutation (phantoms: other patient seeds). Detector settings were chosen on ``tune``;
the published tables are ``report``.

Roles (MedMNIST; one patient per image, images with an exact duplicate in the pool left out):
``train`` (the audited model's training set) from the train-pool half, ``holdout`` (calibration) = the val half,
``reference`` 200 other train-pool images, **negatives** = the rest of the train-pool half plus the test half
(real unseen images of the same classes: the hard negatives, capped by ``--negatives``; reported also by origin,
since only the test split is guaranteed to hold other patients), **positives** =
``--per-cell`` edited copies of training images per (family, level) of :mod:`synthgen.privacy.edits`.
The audit (:func:`~synthgen.privacy.audit.run_audit`, shipped config + overrides) sees positives and negatives
as one synthetic cohort.

Reported per (family, level): recall at the audit's own calibrated thresholds and TPR at 1% / 0.1% FPR on the
negatives (threshold set on the negatives' combined score), each with a 95% Wilson interval; the share matched
to the right training image; the negatives' false-flag rate; the audit's wall and CPU seconds. The combined
score of a sample is ``max_r`` of each rule's margin, ``(s - median_H) / (t - median_H)`` (ratio: mirrored), with
``t`` the rule's calibrated threshold and ``median_H`` the holdout median: 1 = at the threshold; exact copies +inf.
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
from synthgen.privacy.edits import LEVELS, edit_copies  # noqa: E402
from synthgen.privacy.exact import image_hashes, quantize01  # noqa: E402
from synthgen.privacy.inputs import ImageSet  # noqa: E402

SHARED = Path(os.environ.get("SYNTHGEN_SHARED_DATA", REPO.parent / "shared" / "data"))
FILES = {"pneumonia": "pneumoniamnist_imbalanced.npz", "blood": "bloodmnist.npz"}
TRAIN_SIZE = {"pneumonia": 1200, "blood": 3000, "phantom64": 360, "phantom128": 360}


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion ``k / n``."""
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return float(max(0.0, c - h)), float(min(1.0, c + h))


def image_set(x: np.ndarray, y: np.ndarray, pid: np.ndarray | str) -> ImageSet:
    pids = np.array([f"{pid}{i}" for i in range(len(x))]) if isinstance(pid, str) else np.asarray(pid)
    return ImageSet(np.ascontiguousarray(x, np.float32), np.asarray(y, np.int64), pids, "uint8", "bench")


def medmnist_roles(name: str, part: str, n_neg: int) -> dict[str, ImageSet]:
    """``{train, holdout, reference, negatives}`` from one half (``part``) of a MedMNIST file."""
    half = 0 if part == "tune" else 1
    out = {}
    with np.load(SHARED / FILES[name]) as z:
        arr = {}
        for s in ("train", "val", "test"):
            x = z[f"{s}_images"]
            x = (x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)).astype(np.float32) / 255
            arr[s] = (x, z[f"{s}_labels"].reshape(-1).astype(np.int64))
    all_x = np.concatenate([arr[s][0] for s in arr])
    _, inv, cnt = np.unique(image_hashes(quantize01(all_x)), return_inverse=True, return_counts=True)
    unique = cnt[inv] == 1
    start = 0
    for s in ("train", "val", "test"):
        n = len(arr[s][0])
        ok = np.flatnonzero(unique[start:start + n])
        start += n
        perm = np.random.default_rng(15).permutation(ok)
        arr[s] = (arr[s][0][np.array_split(perm, 2)[half]], arr[s][1][np.array_split(perm, 2)[half]])
    (xt, yt), (xv, yv), (xs, ys) = arr["train"], arr["val"], arr["test"]
    nt = TRAIN_SIZE[name]
    out["train"] = image_set(xt[:nt], yt[:nt], "t")
    out["holdout"] = image_set(xv, yv, "h")
    out["reference"] = image_set(xt[nt:nt + 200], yt[nt:nt + 200], "r")
    negx, negy = np.concatenate([xt[nt + 200:], xs]), np.concatenate([yt[nt + 200:], ys])
    keep = np.random.default_rng(16).permutation(len(negx))[:n_neg]
    out["negatives"] = image_set(negx[keep], negy[keep], "n")
    # test-split negatives are unseen patients for sure; train-pool ones may share a patient with a training
    # image (MedMNIST has no patient ids; PneumoniaMNIST's train split holds several X-rays of some children)
    out["neg_from_test"] = keep >= len(xt) - nt - 200
    return out


def phantom_roles(size: int, part: str, n_neg: int) -> dict[str, ImageSet]:
    """Demo phantoms at ``size`` px: 3 views per patient, classes = findings; patients per role disjoint."""
    from synthgen.data.phantom import FINDINGS, render, sample_anatomy, sample_finding, sample_view

    rng = np.random.default_rng(1500 + (0 if part == "tune" else 1))
    counts = {"train": 120, "holdout": 60, "reference": 30, "negatives": max(1, n_neg // 3)}
    out = {}
    for role, n_pat in counts.items():
        xs, ys, ps = [], [], []
        for p in range(n_pat):
            c = int(rng.integers(len(FINDINGS)))
            anat, find = sample_anatomy(rng), sample_finding(FINDINGS[c], rng)
            for _ in range(3):
                xs.append(render(anat, find, sample_view(rng), size))
                ys.append(c)
                ps.append(f"{role}{p}")
        x = (np.rint(np.clip(np.asarray(xs), 0, 1) * 255) / 255).astype(np.float32)[:, None]
        out[role] = image_set(x, np.asarray(ys), np.asarray(ps))
    return out


def combined_score(res, n_pos: int) -> np.ndarray:
    """Max over rules of the margin ``(s - median_H) / (t - median_H)`` (module doc); exact copies +inf."""
    best = np.full(len(res.flags), -np.inf)
    for r in ("pearson", "ssim", "embedding", "ratio"):
        h = np.asarray(res.holdout_scores[r], np.float64)
        med, t = float(np.median(h)), float(res.thresholds[r].overall)
        s = np.asarray(res.scores[r], np.float64)
        m = (s - med) / (t - med) if t != med else np.zeros_like(s)
        best = np.maximum(best, np.nan_to_num(m, nan=-np.inf))
    best[res.rule == "exact"] = np.inf
    return best


def evaluate(res, cells: list[tuple[str, int, int, int]], sources: np.ndarray, n_neg: int,
             neg_from_test: np.ndarray | None = None) -> dict:
    """Per-cell rows (``cells``: family, level, start, stop rows of the cohort) and the negatives' row."""
    score = combined_score(res, len(sources))
    neg = slice(len(sources), len(sources) + n_neg)
    s_neg = np.sort(score[neg])
    thr = {f: float(s_neg[min(len(s_neg) - 1, int(np.ceil((1 - f) * len(s_neg))) )]) for f in (0.01, 0.001)}
    fpr = {f: float((score[neg] > thr[f]).mean()) for f in thr}
    rows = []
    for fam, lv, a, b in cells:
        n = b - a
        k = int(res.flags[a:b].sum())
        right = int((res.flags[a:b] & (res.matched[a:b] == sources[a:b])).sum())
        row = {"family": fam, "level": lv, "params": LEVELS[fam][lv - 1], "n": n, "recall": k / n,
               "recall_ci": wilson(k, n), "right_source": right / n}
        for f in thr:
            kk = int((score[a:b] > thr[f]).sum())
            row[f"tpr_at_{f:g}"] = kk / n
            row[f"tpr_at_{f:g}_ci"] = wilson(kk, n)
        rows.append(row)
    kn = int(res.flags[neg].sum())
    negative = {"n": n_neg, "false_flags": kn, "rate": kn / n_neg, "rate_ci": wilson(kn, n_neg),
                "thresholds_at_fpr": thr, "achieved_fpr": fpr,
                "by_rule": {r: int((res.rule[neg] == r).sum()) for r in ("exact", "pearson", "ssim", "embedding",
                                                                         "ratio")}}
    if neg_from_test is not None:
        f = res.flags[neg]
        for tag, m in (("test_split", neg_from_test), ("train_pool", ~neg_from_test)):
            k, n = int(f[m].sum()), int(m.sum())
            negative[tag] = {"n": n, "false_flags": k, "rate": k / max(n, 1), "rate_ci": wilson(k, n)}
    return {"cells": rows, "negatives": negative}


def plot(rows: list[dict], path: str, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    fams = sorted({r["family"] for r in rows if len(LEVELS[r["family"]]) > 1})
    for f in fams:
        rr = [r for r in rows if r["family"] == f]
        lv = [r["level"] for r in rr]
        y = [r["tpr_at_0.01"] for r in rr]
        lo = [max(0.0, r["tpr_at_0.01"] - r["tpr_at_0.01_ci"][0]) for r in rr]
        hi = [max(0.0, r["tpr_at_0.01_ci"][1] - r["tpr_at_0.01"]) for r in rr]
        ax.errorbar(lv, y, yerr=[lo, hi], marker="o", capsize=3, label=f)
    ax.set_xlabel("edit strength level (edits.LEVELS)")
    ax.set_ylabel("TPR at 1% FPR (95% Wilson CI)")
    ax.set_ylim(0, 1.02)
    ax.set_xticks([1, 2, 3, 4])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    import torch

    from synthgen.privacy.audit import run_audit
    from synthgen.privacy.cli import default_privacy_config

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="pneumonia", choices=["pneumonia", "blood", "phantom64", "phantom128"])
    ap.add_argument("--part", default="report", choices=["tune", "report"])
    ap.add_argument("--per-cell", type=int, default=60)
    ap.add_argument("--negatives", type=int, default=1500)
    ap.add_argument("--families", default=",".join(LEVELS))
    ap.add_argument("--cache", default=str(REPO / "benchmarks" / "_work" / "copy_detection_cache"))
    ap.add_argument("--out", default=None)
    ap.add_argument("--png", default=None)
    ap.add_argument("--label", default="", help="name of this detector variant (recorded)")
    ap.add_argument("overrides", nargs="*", help="privacy config overrides (key=value)")
    a = ap.parse_args()
    cfg = default_privacy_config(list(a.overrides))
    torch.set_num_threads(1)
    roles = (medmnist_roles(a.dataset, a.part, a.negatives) if a.dataset in FILES
             else phantom_roles(int(a.dataset[7:]), a.part, a.negatives))
    neg_from_test = roles.pop("neg_from_test", None)
    train, neg = roles["train"], roles["negatives"]
    rng = np.random.default_rng(150 if a.part == "tune" else 151)
    pos, src, cells = [], [], []
    for fam in a.families.split(","):
        for lv in range(1, len(LEVELS[fam]) + 1):
            idx = rng.choice(len(train), a.per_cell, replace=False)
            x, _ = edit_copies(train.images, idx, fam, lv, int(rng.integers(2**31)))
            cells.append((fam, lv, len(src), len(src) + len(idx)))
            pos.append(x)
            src.extend(idx.tolist())
    sources = np.asarray(src, np.int64)
    syn = image_set(np.concatenate(pos + [neg.images]), np.r_[train.labels[sources], neg.labels], "s")
    t0, c0 = time.time(), time.process_time()
    res = run_audit(train, roles["holdout"], syn, cfg, cache_dir=a.cache, reference=roles["reference"])
    wall, cpu = time.time() - t0, time.process_time() - c0
    out = evaluate(res, cells, sources, len(neg), neg_from_test)
    out.update(dataset=a.dataset, part=a.part, label=a.label, overrides=list(a.overrides),
               sizes={k: len(v) for k, v in roles.items()}, positives=int(len(sources)),
               audit_wall_s=wall, audit_cpu_s=cpu, timings=res.timings,
               thresholds={r: float(t.overall) for r, t in res.thresholds.items()})
    n = out["negatives"]
    print(f"{a.dataset}/{a.part} {a.label}: train {len(train)}, holdout {len(roles['holdout'])}, negatives "
          f"{len(neg)}, positives {len(sources)}; audit {wall:.1f} s wall, {cpu:.1f} s CPU "
          f"(encoder {res.timings.get('embedding_train_or_load', 0):.1f} s)")
    print(f"negatives flagged {n['false_flags']}/{n['n']} = {n['rate']:.2%} (CI {n['rate_ci'][0]:.2%}-"
          f"{n['rate_ci'][1]:.2%}) by rule {n['by_rule']}" + "".join(
              f"; {t}: {n[t]['false_flags']}/{n[t]['n']} = {n[t]['rate']:.2%}" for t in ("test_split", "train_pool")
              if t in n))
    print("| family | level | params | recall (audit) | 95% CI | right source | TPR@1%FPR | 95% CI | TPR@0.1%FPR "
          "| 95% CI |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in out["cells"]:
        pr = ", ".join(f"{k} {v}" for k, v in r["params"].items()) or "-"
        print(f"| {r['family']} | {r['level']} | {pr} | {r['recall']:.1%} | {r['recall_ci'][0]:.1%}-"
              f"{r['recall_ci'][1]:.1%} | {r['right_source']:.1%} | {r['tpr_at_0.01']:.1%} | "
              f"{r['tpr_at_0.01_ci'][0]:.1%}-{r['tpr_at_0.01_ci'][1]:.1%} | {r['tpr_at_0.001']:.1%} | "
              f"{r['tpr_at_0.001_ci'][0]:.1%}-{r['tpr_at_0.001_ci'][1]:.1%} |")
    if a.out:
        write_json(a.out, out)
        # per-sample scores for offline analysis of rule variants (benchmarks/copy_variants.py)
        np.savez_compressed(str(Path(a.out).with_suffix(".npz")), n_neg=len(neg), sources=sources,
                            cells=np.array([f"{f}:{lv}:{x}:{y}" for f, lv, x, y in cells]),
                            labels=syn.labels, hold_labels=roles["holdout"].labels, rule=res.rule,
                            matched=res.matched, flags=res.flags,
                            **{f"syn_{k}": np.asarray(v) for k, v in res.scores.items() if np.ndim(v) == 1},
                            **{f"hold_{k}": np.asarray(v) for k, v in res.holdout_scores.items() if np.ndim(v) == 1})
    if a.png:
        plot(out["cells"], a.png, f"{a.dataset} ({a.part}) {a.label}: TPR at 1% FPR vs edit strength")


if __name__ == "__main__":
    main()
