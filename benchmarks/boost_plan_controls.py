"""Positive and negative controls of the boost plan on a prepared rare-class cut (e.g. BloodMNIST, basophils
kept at 40), without a generator:

* positive: the "candidates" are the real training images of the rare class that the ``data.rare`` cut
  removed (``train_uncut`` minus ``train``, never val or test): the plan should ship them with a gain;
* negative: Gaussian-noise images labelled as the rare class: the plan should ship none.

    python benchmarks/boost_plan_controls.py --prepared /tmp/blood40 --class basophil --out /tmp/controls.json \
        [--steps 100] [--pretrain-steps 0] [--seeds 0 1 2 3 4] [--controls positive negative]

Prints each control's plan lines and wall time, writes both ``BoostPlan.to_json()`` to ``--out``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.real_positive_cohort import removed_by_cut  # noqa: E402
from synthgen.curation.plan import choose_boost_plan, load_plan_inputs  # noqa: E402
from synthgen.data.symmetries import parse_symmetries  # noqa: E402
from synthgen.data.transforms import dequantize  # noqa: E402
from synthgen.io import write_json  # noqa: E402
from synthgen.metrics.classifier import Recipe  # noqa: E402
from synthgen.metrics.utility import LabeledImages  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prepared", type=Path, required=True)
    ap.add_argument("--class", dest="cls", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--pretrain-steps", type=int, default=0)
    ap.add_argument("--metric", default="recall", choices=["recall", "soft_recall"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--amounts", type=float, nargs="+", default=[0.5, 1, 2, 5, 10])
    ap.add_argument("--shares", type=float, nargs="+", default=[0.5, 0.25, 0.75])
    ap.add_argument("--symmetries", nargs="*", default=["hflip", "vflip", "rot90"])
    ap.add_argument("--controls", nargs="+", default=["positive", "negative"])
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    train, val, names = load_plan_inputs(a.prepared)
    c = names.index(a.cls)
    recipe = Recipe(symmetries=parse_symmetries(a.symmetries))
    plan_cfg = {"enabled": True, "amounts": a.amounts, "shares": a.shares, "seeds": a.seeds, "steps": a.steps,
                "batch_size": a.batch_size, "confidence": 0.95, "guidance": None,
                "pretrain_steps": a.pretrain_steps, "metric": a.metric}
    out = {}
    for control in a.controls:
        if control == "positive":
            x = torch.from_numpy(dequantize(removed_by_cut(a.prepared, c)))
        else:
            gen = torch.Generator().manual_seed(0)
            real = train.images[torch.as_tensor(train.labels == c)]
            x = (real.mean() + real.std() * torch.randn((800,) + tuple(train.images.shape[1:]), generator=gen))
            x = x.clamp(0, 1)
        cand = LabeledImages(x, np.full(len(x), c, dtype=np.int64))
        t0 = time.perf_counter()
        plan = choose_boost_plan(train, val, cand, np.ones(len(x), np.float32), [a.cls], names, plan_cfg, recipe, 0)
        wall = time.perf_counter() - t0
        out[control] = {"n_candidates": len(x), "wall_s": round(wall, 1), "plan": plan.to_json()}
        print(f"{control}: {len(x)} candidates, {plan.runs} runs x {len(a.seeds)} seeds, {wall:.0f} s")
        for line in plan.summary_lines():
            print("   ", line)
    write_json(a.out, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
