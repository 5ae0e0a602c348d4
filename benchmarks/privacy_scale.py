"""Scale of the privacy audit: k-NN backends and the whole audit at 10k x 10k and 50k x 50k.

    nice -n 5 python benchmarks/privacy_scale.py [--sizes 10000,50000] [--knn-size 10000]
        [--out benchmarks/_work/privacy_scale.json]

1. k-NN, ``--knn-size`` queries x the same number of base rows, top-16, in the two representations the audit
   searches exhaustively (the 64-d copy embedding and 4x-pooled pixels, d = 3*7*7): naive full similarity
   matrix + topk (memory N^2), ours (:func:`synthgen.privacy.knn.knn`, chunked), faiss ``IndexFlatIP``.
   Ratios are against the naive run measured in the same process.
2. Whole audit (``run_audit``, default config) for each size N: train N, synthetic N, holdout N/5, each run
   in a fresh subprocess so peak RSS (``ru_maxrss`` of the child) is the audit's own. Images are BloodMNIST
   images (all splits) tiled with mild edits to reach N. The copy encoder is trained once per training set
   and cached; its training time is reported inside ``timings`` and subtracted in
   ``audit_wall_without_encoder_training_s`` / ``audit_cpu_without_encoder_training_s`` (audits of the same
   training data reuse it). The built sets are cached next to it (``sets-<data>-<N>.npz``). ``cpu_s`` is the
   audit's user+sys CPU time: with one thread it approximates the wall time on a quiet core.

Timings come from a shared 2-core machine with other jobs running (see ``load_avg`` in the output).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SHARED = next((p for p in (Path(os.environ.get("SYNTHGEN_SHARED_DATA", "/nonexistent")), REPO.parent / "shared" / "data",
                           REPO.parent.parent / "shared" / "data") if p.exists()), REPO.parent / "shared" / "data")


def pool_images(data: str) -> tuple[np.ndarray, np.ndarray]:
    z = np.load(data)
    x = np.concatenate([z[f"{s}_images"] for s in ("train", "val", "test")]).transpose(0, 3, 1, 2)
    y = np.concatenate([z[f"{s}_labels"][:, 0] for s in ("train", "val", "test")])
    return x.astype(np.float32) / 255, y.astype(np.int64)


def tiled(x: np.ndarray, y: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images: a seeded permutation of the pool, topped up with mild edits of pool images."""
    from synthgen.privacy.plant import plant_copies

    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(x))[: min(n, len(x))]
    parts, labels = [x[idx]], [y[idx]]
    extra = n - len(idx)
    k = 0
    while extra > 0:
        j = rng.choice(len(x), min(extra, len(x)), replace=False)
        parts.append(plant_copies(x, j, "mild", seed + 1000 + k)[0])
        labels.append(y[j])
        extra -= len(j)
        k += 1
    return np.concatenate(parts), np.concatenate(labels)


def child_audit(data: str, n: int, cache: str, threads: int, overrides: list[str]) -> None:
    """Runs inside the subprocess: build the sets, run the audit, print one JSON line."""
    import torch

    from synthgen.privacy.audit import run_audit
    from synthgen.privacy.cli import default_privacy_config
    from synthgen.privacy.inputs import ImageSet

    torch.set_num_threads(threads)  # also while building the sets (per-image edits: 10x slower on 2 threads)
    sets = Path(cache) / f"sets-{Path(data).stem}-{n}.npz"  # building 50k sets is minutes of slow Python
    if sets.exists():
        with np.load(sets) as z:
            tx, ty, sx, sy, hx, hy = (z[k] for k in ("tx", "ty", "sx", "sy", "hx", "hy"))
    else:
        x, y = pool_images(data)
        rng = np.random.default_rng(0)
        perm = rng.permutation(len(x))
        half = len(x) // 2
        tx, ty = tiled(x[perm[:half]], y[perm[:half]], n, 1)
        sx, sy = tiled(x[perm[half:]], y[perm[half:]], n, 2)
        hx, hy = tiled(x[perm[half:]][::-1], y[perm[half:]][::-1], max(n // 5, 1000), 3)
        from synthgen.io import save_npz

        save_npz(sets, tx=tx, ty=ty, sx=sx, sy=sy, hx=hx, hy=hy)

    def mk(a, b, name):
        return ImageSet(a, b, np.array([f"{name}{i}" for i in range(len(a))]), "uint8", name)

    cfg = default_privacy_config([f"threads={threads}", *overrides])
    t0, c0 = time.time(), time.process_time()
    res = run_audit(mk(tx, ty, "t"), mk(hx, hy, "h"), mk(sx, sy, "s"), cfg, cache_dir=cache)
    print("RESULT " + json.dumps({"n": n, "wall_s": time.time() - t0, "timings": res.timings,
                                  # user+sys CPU seconds of the audit: ~ its wall time on a quiet core (threads=1)
                                  "cpu_s": time.process_time() - c0,
                                  "flagged_share": res.stats["flagged_share"],
                                  "peak_rss_self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def knn_compare(data: str, n: int) -> dict:
    import torch

    from synthgen.privacy.knn import knn, normalize_rows
    from synthgen.privacy.pixel import lowres

    x, _ = pool_images(data)
    q_img, b_img = tiled(x, np.zeros(len(x), np.int64), n, 5)[0], tiled(x, np.zeros(len(x), np.int64), n, 6)[0]
    out = {}
    rng = np.random.default_rng(0)
    reps = {"embedding_d64": (normalize_rows(rng.normal(size=(n, 64)).astype(np.float32)),
                              normalize_rows(rng.normal(size=(n, 64)).astype(np.float32))),
            "lowres_pixel_d147": (lowres(q_img, 4), lowres(b_img, 4))}
    for name, (q, b) in reps.items():
        row = {}
        t0 = time.time()
        full = q @ b.T
        s_ref, i_ref = torch.topk(full, 16, dim=1)
        row["naive_full_matrix_s"] = time.time() - t0
        row["naive_matrix_mb"] = full.numel() * 4 / 2**20
        del full
        t0 = time.time()
        s, i = knn(q, b, 16)
        row["ours_chunked_s"] = time.time() - t0
        row["ours_block_mb"] = 256
        row["ours_same_neighbours"] = float((i == i_ref.numpy()).mean())
        t0 = time.time()
        s2, i2 = knn(q, b, 16, backend="faiss")
        row["faiss_s"] = time.time() - t0
        row["faiss_same_neighbours"] = float((i2 == i_ref.numpy()).mean())
        row["ours_vs_naive"] = row["ours_chunked_s"] / row["naive_full_matrix_s"]
        row["faiss_vs_naive"] = row["faiss_s"] / row["naive_full_matrix_s"]
        out[name] = row
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(SHARED / "bloodmnist.npz"))
    ap.add_argument("--sizes", default="10000,50000")
    ap.add_argument("--knn-size", type=int, default=10000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache", default=str(REPO / "benchmarks" / "_work" / "privacy_scale_cache"))
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "_work" / "privacy_scale.json"))
    ap.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("overrides", nargs="*", help="privacy config overrides for the audits")
    a = ap.parse_args()
    if a.child:
        child_audit(a.data, a.child, a.cache, a.threads, a.overrides)
        return
    import torch

    from synthgen.io import write_json

    torch.set_num_threads(a.threads)
    out: dict = {"machine": {"cpus": os.cpu_count(), "load_avg_start": os.getloadavg(), "torch_threads": a.threads,
                             "note": "shared 2-core machine, other engineers' jobs running; nice -n 5"}}
    if a.knn_size:
        out["knn"] = {"n": a.knn_size, **knn_compare(a.data, a.knn_size)}
        print(json.dumps(out["knn"], indent=1), flush=True)
    out["audit"] = []
    for n in [int(s) for s in a.sizes.split(",") if s]:
        t0 = time.time()
        r = subprocess.run([sys.executable, __file__, "--child", str(n), "--data", a.data, "--cache", a.cache,
                            "--threads", str(a.threads), *a.overrides], capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(r.stderr[-3000:])
        line = next(ln for ln in r.stdout.splitlines() if ln.startswith("RESULT "))
        row = {**json.loads(line[7:]), "process_wall_s": time.time() - t0, "load_avg": os.getloadavg()}
        # the encoder is trained once per training set and cached; an audit of the same data reuses it
        row["audit_wall_without_encoder_training_s"] = row["wall_s"] - row["timings"]["embedding_train_or_load"]
        row["audit_cpu_without_encoder_training_s"] = row["cpu_s"] - row["timings"].get("embedding_train_or_load_cpu", 0.0)
        out["audit"].append(row)
        print(json.dumps(row), flush=True)
    out["machine"]["load_avg_end"] = os.getloadavg()
    write_json(a.out, out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
