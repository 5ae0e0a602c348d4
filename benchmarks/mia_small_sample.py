"""False-fail rate and power of the membership-inference gates at small audit sizes, former rule vs current.

    OMP_NUM_THREADS=1 python benchmarks/mia_small_sample.py [--seeds 1000] [--out /tmp/gate/mia_small.json]

Scores are simulated (numpy only, no model): ``m`` member and ``n`` non-member scores per seed.

* ``null``: both from N(0, 1): a model that memorized nothing; every fail is a false fail (target <= alpha).
* ``leak_at_limit``: each member exposed (+10) with probability ``e0 = (0.03 - 0.01) / 0.99``, the rest
  N(0, 1): TPR at 1% FPR is exactly 0.03, the TPR gate's H0 boundary (target <= alpha for that gate).
* ``memorizer``: members N(2, 1): a clear leak; every pass is a miss.

Former rule: AUC gate fails when AUC > 0.6 (no test); TPR gate fails when the ROC-interpolated TPR at 1% FPR
exceeds 0.03 with a one-sided binomial p < 0.05 on ``round(tpr * m)`` of ``m``. Current rule:
:func:`synthgen.privacy.gate.mia_gates` (:mod:`synthgen.privacy.mia_gate`). Prints one row per (case, m, n)
with the fail rate of each gate under each rule.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy.stats import binom

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from synthgen.privacy.gate import mia_gates  # noqa: E402
from synthgen.privacy.membership import attack_metrics  # noqa: E402

GATES = {"mia_max_auc": 0.6, "mia_max_tpr_at_1pct_fpr": 0.03, "mia_alpha": 0.05}
SIZES = ((84, 12), (12, 12), (120, 120), (2000, 2000))


def draw(case: str, m: int, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(member_scores (m,), nonmember_scores (n,))`` for one simulated audit."""
    mem, non = rng.normal(0, 1, m), rng.normal(0, 1, n)
    if case == "leak_at_limit":
        mem[rng.random(m) < 0.02 / 0.99] = 10.0
    elif case == "memorizer":
        mem += 2.0
    return mem, non


def former(a: dict) -> tuple[bool, bool]:
    """The former rule's (auc_fail, tpr_fail)."""
    k = int(round(a["tpr_at_fpr"] * a["n_members"]))
    p = float(binom.sf(k - 1, a["n_members"], 0.03)) if k > 0 else 1.0
    return bool(a["auc"] > 0.6), bool(a["tpr_at_fpr"] > 0.03 and p < 0.05)


def run(seeds: int) -> list[dict]:
    rows = []
    for case in ("null", "leak_at_limit", "memorizer"):
        for m, n in SIZES:
            fails = np.zeros((seeds, 4), bool)
            for s in range(seeds):
                a = attack_metrics(*draw(case, m, n, np.random.default_rng(s)))
                g = mia_gates("mia", a, GATES, None)
                fails[s] = (*former(a), not g["mia_auc"]["passed"], not g["mia_tpr_at_1pct_fpr"]["passed"])
            r = fails.mean(0)
            rows.append({"case": case, "m": m, "n": n, "seeds": seeds, "auc_former": r[0], "tpr_former": r[1],
                         "auc_now": r[2], "tpr_now": r[3]})
            print(f"{case:14s} m={m:5d} n={n:5d}  AUC fail {r[0]:.3f} -> {r[2]:.3f}   "
                  f"TPR fail {r[1]:.3f} -> {r[3]:.3f}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=1000)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    rows = run(args.seeds)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
