"""Rule-set and calibration variants re-scored offline from one copy-detection run's per-sample scores.

    python benchmarks/copy_variants.py benchmarks/_work/cd/pneumonia_tune_after.npz [--quantiles 0.999,0.9995] \
        [--tails empirical,exponential@0.1,exponential@0.1/pearson] [--all-subsets]

``benchmarks/copy_detection.py --out X.json`` also writes ``X.npz``: every synthetic (positives + negatives)
and holdout score of the audit. Here the thresholds are re-calibrated on those holdout scores
(:func:`~synthgen.privacy.calibrate.calibrate`, the audit's floors and per-class rule) for each rule subset and
quantile and tail estimate (``--tails``: :func:`~synthgen.privacy.calibrate.tail_quantile`, ``KIND@FRACTION``,
optionally ``/RULE+RULE`` for the rules it applies to, the others empirical), and the flags re-applied: the
recall of the target cells and the negatives' false-flag rate per variant, without running the audit again (the scores themselves do not depend on the rules).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.copy_detection import wilson  # noqa: E402
from synthgen.privacy.calibrate import calibrate  # noqa: E402

FLOORS = {"pearson": 0.95, "ssim": None, "embedding": None}
TARGETS = ("exact:1", "mild:1", "issue:1", "rotscale:1", "rotscale:2", "rotscale:3", "rotscale:4", "translate:2",
           "crop:2", "noise:3", "blur:3")


def flags_for(z, rules: tuple[str, ...], q: float, tail: str = "empirical", frac: float = 0.1,
              tail_rules: tuple[str, ...] = ("pearson", "ssim", "embedding", "ratio")) -> np.ndarray:
    keep = np.ones(len(z["hold_labels"]), bool)
    out = z["rule"] == "exact"
    for r in rules:
        tl = tail if r in tail_rules else "empirical"
        if r == "ratio":
            t = calibrate("ratio", z["hold_ratio"], z["hold_labels"], keep, q, 1 / 3, 50, higher_is_copy=False,
                          tail=tl, tail_fraction=frac)
        else:
            t = calibrate(r, z[f"hold_{r}"], z["hold_labels"], keep, q, FLOORS[r], 50, tail=tl, tail_fraction=frac)
        out = out | t.fires(z[f"syn_{r}"], z["labels"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("npz")
    ap.add_argument("--quantiles", default="0.999")
    ap.add_argument("--tails", default="empirical", help="comma list of TAIL[@FRACTION][/RULE+RULE] "
                    "(synthgen.privacy.calibrate.tail_quantile; rules: those the tail fit applies to)")
    ap.add_argument("--all-subsets", action="store_true", help="also every rule subset (default: all rules)")
    ap.add_argument("--origin", default=None, help="DATASET:PART of the run: also split the negatives' false flags "
                    "by origin (test split = other patients for sure, train pool = maybe not)")
    a = ap.parse_args()
    z = np.load(a.npz)
    n_neg = int(z["n_neg"])
    neg = slice(len(z["sources"]), len(z["sources"]) + n_neg)
    test = None
    if a.origin:
        from benchmarks.copy_detection import medmnist_roles

        test = medmnist_roles(*a.origin.split(":"), n_neg)["neg_from_test"]
    cells = {}
    for c in z["cells"]:
        f, lv, x, y = str(c).split(":")
        cells[f"{f}:{lv}"] = slice(int(x), int(y))
    names = [t for t in TARGETS if t in cells]
    extra = " | test-split negatives | train-pool negatives" if test is not None else ""
    print("| rules | quantile | tail | " + " | ".join(names) + " | false flags (95% CI)" + extra + " |")
    print("|---|---|---|" + "---|" * len(names) + "---|" + ("---|---|" if test is not None else ""))
    all_rules = ("pearson", "ssim", "embedding", "ratio")
    subsets = [s for k in (4, 3, 2, 1) for s in itertools.combinations(all_rules, k) if "pearson" in s]
    if not a.all_subsets:
        subsets = subsets[:1]
    for q, tail, rules in itertools.product([float(v) for v in a.quantiles.split(",")], a.tails.split(","),
                                            subsets):
        name, _, tr = tail.partition("/")
        kind, _, frac = name.partition("@")
        tail_rules = tuple(tr.split("+")) if tr else all_rules
        f = flags_for(z, rules, q, kind, float(frac or 0.1), tail_rules)
        k = int(f[neg].sum())
        lo, hi = wilson(k, n_neg)
        rec = " | ".join(f"{f[cells[t]].mean():.1%}" for t in names)
        ext = ""
        if test is not None:
            fn = f[neg]
            ext = "".join(f" | {int(fn[m].sum())}/{int(m.sum())} = {fn[m].mean():.2%}" for m in (test, ~test))
        print(f"| {'+'.join(rules)} | {q:g} | {tail} | {rec} | {k}/{n_neg} = {k / n_neg:.2%} "
              f"({lo:.2%}-{hi:.2%}){ext} |")


if __name__ == "__main__":
    main()
