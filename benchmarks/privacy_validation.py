"""Validate the privacy gate on real BloodMNIST images with planted copies (issue 5, item 5).

    nice -n 5 python benchmarks/privacy_validation.py [--data ../shared/data/bloodmnist.npz] [--plant 1000]
        [--out benchmarks/_work/privacy_validation.json] [--parts recall,dose,mia] [privacy overrides...]

Setup (official MedMNIST splits): train = ``train`` (11,959), holdout = ``val`` (1,712), negatives = ``test``
(3,421: real images of patients never seen, standing in for a synthetic cohort). No reference set is passed,
so the audit uses a seeded half of ``val`` as the reference of real unseen images and calibrates on the other
half (:func:`synthgen.privacy.inputs.split_holdout`).

* recall: ``--plant`` training images per strength (exact / mild / moderate, :mod:`synthgen.privacy.plant`)
  are added to the negatives; one audit; recall per strength (and per moderate edit), false-flag rate on the
  negatives (the 5 test images that are exact copies of training images are native duplicates: listed, not
  counted as false flags).
* dose: 2,000 negatives + planted copies (mixed strengths) at 0, 1, 5, 25%: flagged share, DCR share and
  distance-MIA AUC (before dropping) must grow monotonically; 0% must pass the gate.
* mia: a deliberately overfit generator (a small conditional autoencoder trained many epochs on 300 training
  images; samples = decoded latents + noise) -> membership AUC (distance and loss based) well above 0.5;
  control: two disjoint sets of non-members -> about 0.5.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
import os  # noqa: E402

SHARED = next((p for p in (Path(os.environ.get("SYNTHGEN_SHARED_DATA", "/nonexistent")), REPO.parent / "shared" / "data",
                           REPO.parent.parent / "shared" / "data") if p.exists()), REPO.parent / "shared" / "data")

from synthgen.io import write_json  # noqa: E402
from synthgen.privacy.audit import run_audit  # noqa: E402
from synthgen.privacy.cli import default_privacy_config  # noqa: E402
from synthgen.privacy.exact import image_hashes, match_exact, quantize01  # noqa: E402
from synthgen.privacy.inputs import ImageSet, read_image_set  # noqa: E402
from synthgen.privacy.plant import STRENGTHS, memorized_samples, memorizing_generator, plant_copies  # noqa: E402


def _set(images: np.ndarray, labels: np.ndarray, name: str) -> ImageSet:
    return ImageSet(images.astype(np.float32), labels.astype(np.int64),
                    np.array([f"{name}#{i}" for i in range(len(images))]), "uint8", name)


def recall_part(train: ImageSet, hold: ImageSet, neg: ImageSet, cfg: dict, n_plant: int, seed: int,
                cache: str) -> dict:
    rng = np.random.default_rng(seed)
    imgs, labels, kind, src, ops = [neg.images], [neg.labels], ["negative"] * len(neg), [-1] * len(neg), [""] * len(neg)
    for k, strength in enumerate(STRENGTHS):
        idx = np.sort(rng.choice(len(train), n_plant, replace=False))
        x, params = plant_copies(train.images, idx, strength, seed + 100 + k)
        imgs.append(x)
        labels.append(train.labels[idx])
        kind += [strength] * len(idx)
        src += idx.tolist()
        ops += [p.get("op", "") for p in params]
    syn = _set(np.concatenate(imgs), np.concatenate(labels), "negatives+planted")
    t0 = time.time()
    res = run_audit(train, hold, syn, cfg, cache_dir=cache)
    wall = time.time() - t0
    kind, src, ops = np.array(kind), np.array(src), np.array(ops)
    neg_idx = np.flatnonzero(kind == "negative")
    neg_exact = match_exact(image_hashes(quantize01(neg.images)), image_hashes(quantize01(train.images)))
    native_neg = np.flatnonzero(neg_exact >= 0)
    clean_neg = np.setdiff1d(neg_idx, native_neg)
    out = {"wall_s": wall, "n_negatives": int(len(neg_idx)), "n_planted_per_strength": n_plant,
           "false_flag_rate": float(res.flags[clean_neg].mean()),
           "false_flags": int(res.flags[clean_neg].sum()),
           "false_flags_by_rule": {r: int((res.rule[clean_neg] == r).sum()) for r in ("pearson", "ssim", "embedding", "ratio")},
           "native_duplicates_in_negatives": [[int(i), int(neg_exact[i])] for i in native_neg],
           "native_duplicates_flagged": int(res.flags[native_neg].sum()),
           "holdout_false_flag_rate_calibration": res.stats["holdout_false_flag_rate"],
           "thresholds": {k: t.describe() for k, t in res.thresholds.items()},
           "native_duplicates": res.duplicates, "timings": res.timings, "recall": {}}
    # what a stricter prefilter would have searched (holdout quantiles of best low-res Pearson / cosine)
    keep_cal = np.asarray(res.holdout_scores["lowres"]) > -2
    out["prefilter_pass"] = {}
    for pq in (0.1, 0.25, 0.5, 0.8, 0.9):
        lo = np.quantile(res.holdout_scores["lowres"][keep_cal], pq)
        em = np.quantile(res.holdout_scores["embedding"][keep_cal], pq)
        passed = (res.scores["lowres"] >= lo) | (res.scores["embedding"] >= em)
        out["prefilter_pass"][str(pq)] = {s: float(passed[kind == s].mean()) for s in ("negative", *STRENGTHS)}
    for strength in STRENGTHS:
        m = kind == strength
        hit = res.flags[m]
        right = res.matched[m] == src[m]
        out["recall"][strength] = {"recall": float(hit.mean()), "n": int(m.sum()),
                                   "matched_correct_train_index": float(right[hit].mean()) if hit.any() else None,
                                   "by_rule": {r: int((res.rule[m] == r).sum()) for r in
                                               ("exact", "pearson", "ssim", "embedding", "ratio")}}
        if strength == "moderate":
            out["recall"]["moderate_by_op"] = {op: float(res.flags[m & (ops == op)].mean())
                                               for op in ("rotate", "scale", "crop")}
    return out


def dose_part(train: ImageSet, hold: ImageSet, neg: ImageSet, cfg: dict, seed: int, cache: str,
              n_neg: int = 2000) -> dict:
    rng = np.random.default_rng(seed + 7)
    base = np.sort(rng.choice(len(neg), min(n_neg, len(neg)), replace=False))
    rows = []
    for frac in (0.0, 0.01, 0.05, 0.25):
        n_p = int(round(frac * len(base) / (1 - frac)))
        idx = np.sort(rng.choice(len(train), n_p, replace=False)) if n_p else np.zeros(0, np.int64)
        parts = [plant_copies(train.images, idx[i::3], s, seed + 200 + i)[0] for i, s in enumerate(STRENGTHS)]
        labs = [train.labels[idx[i::3]] for i in range(3)]
        syn = _set(np.concatenate([neg.images[base], *parts]), np.concatenate([neg.labels[base], *labs]),
                   f"dose{frac}")
        res = run_audit(train, hold, syn, cfg, cache_dir=cache)
        s = res.stats
        rows.append({"planted_fraction": frac, "n": len(syn), "n_planted": n_p, "passed": res.passed,
                     "failed_gates": [k for k, g in res.gates.items() if not g["passed"]],
                     "flagged_share": s["flagged_share"], "dcr_share_before_drop": s["dcr_all"]["share_syn"],
                     "dcr_share_reference": s["dcr_all"]["share_ref_matched"],
                     "mia_auc_before_drop": s["mia_all"]["auc"], "dcr_share_kept": s["dcr"]["share_syn"],
                     "mia_auc_kept": s["mia"]["auc"]})
    keys = ("flagged_share", "dcr_share_before_drop", "mia_auc_before_drop")
    mono = {k: bool(all(a[k] < b[k] for a, b in zip(rows, rows[1:]))) for k in keys}
    return {"rows": rows, "monotone": mono, "zero_passes": rows[0]["passed"]}


def mia_part(train: ImageSet, neg: ImageSet, hold: ImageSet, cfg: dict, seed: int, cache: str,
             n: int = 300, epochs: int = 400) -> dict:
    rng = np.random.default_rng(seed + 11)
    mem = np.sort(rng.choice(len(train), n, replace=False))
    non = np.sort(rng.choice(len(hold), n, replace=False))
    t0 = time.time()
    model, final_mse = memorizing_generator(train.images[mem], train.labels[mem], epochs, seed)
    train_s = time.time() - t0
    samples = np.concatenate([memorized_samples(model, train.images[mem], train.labels[mem], 0.3, seed + k)
                              for k in range(2)])
    syn = _set(samples, np.concatenate([train.labels[mem]] * 2), "overfit-generator")

    def error_fn(images01: np.ndarray, labels: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            xx = torch.as_tensor(images01)
            return ((model(xx, torch.as_tensor(labels)) - xx) ** 2).flatten(1).mean(1).numpy()

    members = _set(train.images[mem], train.labels[mem], "members")
    nonmem = _set(hold.images[non], hold.labels[non], "nonmembers")
    res = run_audit(members, nonmem, syn, cfg, error_fn=error_fn, cache_dir=cache)
    # control: "members" that are not members (disjoint unseen sets) against the same generator
    other = np.sort(rng.choice(len(neg), n, replace=False))
    fake_members = _set(neg.images[other], neg.labels[other], "nonmembers-2")
    ctrl = run_audit(fake_members, nonmem, syn, cfg, error_fn=error_fn, cache_dir=cache)
    return {"n_members": n, "epochs": epochs, "final_mse": final_mse, "train_s": train_s,
            "overfit": {"mia_distance_before_drop": res.stats["mia_all"], "mia_distance_kept": res.stats["mia"],
                        "mia_loss": res.stats["mia_loss"], "flagged_share": res.stats["flagged_share"],
                        "passed": res.passed, "failed_gates": [k for k, v in res.gates.items() if not v["passed"]]},
            "control_disjoint_nonmembers": {"mia_distance_before_drop": ctrl.stats["mia_all"],
                                            "mia_loss": ctrl.stats["mia_loss"]}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(SHARED / "bloodmnist.npz"))
    ap.add_argument("--plant", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--parts", default="recall,dose,mia")
    ap.add_argument("--cache", default=str(REPO / "benchmarks" / "_work" / "privacy_cache"))
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "_work" / "privacy_validation.json"))
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_args()
    cfg = default_privacy_config(a.overrides)
    torch.set_num_threads(int(cfg.get("threads") or torch.get_num_threads()))  # as the audit (shared machine)
    train = read_image_set(f"{a.data}#train", "train")
    hold = read_image_set(f"{a.data}#val", "holdout")
    neg = read_image_set(f"{a.data}#test", "synthetic")
    out: dict = {"data": a.data, "config": cfg, "torch_threads": cfg.get("threads")}
    parts = a.parts.split(",")
    if "recall" in parts:
        out["recall_part"] = recall_part(train, hold, neg, cfg, a.plant, a.seed, a.cache)
        print(json.dumps({k: out["recall_part"][k] for k in ("recall", "false_flag_rate", "false_flags",
                                                              "false_flags_by_rule", "wall_s")}, indent=1), flush=True)
    if "dose" in parts:
        out["dose_part"] = dose_part(train, hold, neg, cfg, a.seed, a.cache)
        print(json.dumps(out["dose_part"], indent=1), flush=True)
    if "mia" in parts:
        out["mia_part"] = mia_part(train, neg, hold, cfg, a.seed, a.cache)
        print(json.dumps(out["mia_part"], indent=1), flush=True)
    write_json(a.out, out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
