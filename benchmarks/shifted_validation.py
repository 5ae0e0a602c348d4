"""Emulate a validation set that carries the deployment shift, for the boost plan (docs/boost.md, session 8).

On PneumoniaMNIST the official test split differs from train/val (oversampling recognises 0.83 of the validation
`normal` images and 0.38 of the test ones), so a plan that validates on the prepared val split cannot see what
synthetic images do under that shift. A team with a second site would hold out some of its labelled images for
``curate.plan.validation``. MedMNIST has no sites; this script stands one in: it splits the prepared test split
into two class-stratified halves (seeded) and writes

* ``OUT/prepared/``: a copy of the prepared folder whose ``test.npz`` is half B only (what evaluate scores);
* ``OUT/site_val.npz``: half A, the stand-in second site's labelled images, for ``curate.plan.validation``
  (it shares no image with half B or train, so the plan's guard accepts it).

Half A is never scored by evaluate and half B is never seen by the plan:

    python pipelines/curate.py ... paths.prepared=OUT/prepared curate.plan.validation=OUT/site_val.npz
    python pipelines/evaluate.py ... paths.prepared=OUT/prepared MedMNIST carries no patient ids, so the
halves may share patients: the emulation is kinder than a real second site would be.

    python benchmarks/shifted_validation.py --prepared RUN/data/prepared --out RUN/shifted --seed 0
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from synthgen.curation.plan_validation import image_hashes


def split_test(prepared: Path, out: Path, seed: int) -> dict[str, dict[str, int]]:
    """Write ``out/prepared`` and ``out/site_val.npz`` (see the module docstring); return per-class counts of
    the two halves and how many byte-identical copies half A dropped."""
    if not (prepared / "test.npz").is_file() or not (prepared / "meta.json").is_file():
        raise SystemExit(f"error: {prepared}: not a prepared folder (test.npz and meta.json needed)")
    with np.load(prepared / "test.npz", allow_pickle=False) as z:
        test = {k: z[k] for k in z.files}
    labels = test["labels"]
    rng = np.random.default_rng(seed)
    half_a = np.zeros(len(labels), bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        half_a[rng.permutation(idx)[: len(idx) // 2]] = True
    meta = json.loads((prepared / "meta.json").read_text())
    names = list(meta["class_names"])
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(prepared, tmp / "prepared")
    np.savez(tmp / "prepared" / "test.npz", **{k: v[~half_a] for k, v in test.items()})
    # the official test split holds some byte-identical images; one in each half would put a test image in the
    # plan's validation set (curate.plan.validation refuses that), so half A drops its copies of half B / train
    with np.load(prepared / "train.npz", allow_pickle=False) as z:
        seen = set(image_hashes(z["images"])) | set(image_hashes(test["images"][~half_a]))
    site = half_a & np.array([h not in seen for h in image_hashes(test["images"])])
    np.savez(tmp / "site_val.npz", **{k: v[site] for k, v in test.items()})
    counts = {s: {n: int((labels[m] == i).sum()) for i, n in enumerate(names)}
              for s, m in (("site_val", site), ("test", ~half_a))}
    counts["site_val_dropped_copies"] = {"n": int(half_a.sum() - site.sum())}
    meta["counts"]["test"] = counts["test"]
    meta["split_policy"] = (meta.get("split_policy", "") + f" EMULATED SECOND SITE (seed {seed}): test = a "
                            "class-stratified half of the official test split; the other half is site_val.npz, "
                            "outside this folder.").strip()
    (tmp / "prepared" / "meta.json").write_text(json.dumps(meta, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prepared", type=Path, required=True, help="a prepared folder (train/val/test .npz)")
    ap.add_argument("--out", type=Path, required=True, help="output folder (replaced)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the stratified half split")
    a = ap.parse_args(argv)
    counts = split_test(a.prepared, a.out, a.seed)
    print(f"wrote {a.out}/prepared (test = half B) and {a.out}/site_val.npz (half A): {json.dumps(counts)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
