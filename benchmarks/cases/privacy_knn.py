"""Benchmark case ``privacy_knn``: exact top-k search of the privacy audit at N queries x N base rows.

Sizes N = 10k, 50k, 100k (2k, 5k in ``--quick``; ``$SYNTHGEN_BENCH_KNN_SIZES=1000,...`` overrides); k = 16; the two representations the audit searches
exhaustively (``synthgen.privacy.audit``):

* ``pixel d147``: BloodMNIST images (all splits, 17,092) 4x average-pooled, row-centred, unit norm
  (:func:`synthgen.privacy.pixel.lowres`), the Pearson prefilter; beyond the pool size the sets are topped up
  with seeded edits of pool images (+-2 px shift, noise of 1% of the range, re-quantized to 1/255). Queries
  and base are drawn with different seeds.
* ``embedding d64``: unit vectors of the copy encoder's dimension (seeded Gaussian, normalised): the search
  cost depends on the shape, not on what the encoder learned.

Backends, each in a fresh subprocess (so peak RSS = ``VmHWM`` of that child alone, which includes the
~N x d x 8 bytes of the two input sets and the interpreter with torch, ~0.3 GiB):

* ``naive``: the full ``(N, N)`` float32 similarity matrix, then ``torch.topk`` (the reference; skipped
  where the matrix would not fit in half of the memory available when the case starts, and said so);
* ``ours``: :func:`synthgen.privacy.knn.knn` with ``backend="torch"`` (chunked matmul + topk, 256 MB blocks);
* ``faiss``: faiss-cpu ``IndexFlatIP`` (what ``knn(backend="auto")`` picks on a CPU when faiss is there).

Figures: CPU seconds of the search (the child's own process time; wall seconds in the notes), peak RSS, and
the share of ours' neighbour lists equal to faiss' (ties may order differently). Threads: one
(``$SYNTHGEN_BENCH_THREADS``). Target: 100k x 100k finishes with peak RSS < 4 GiB.

Run a child by hand: ``python -m benchmarks.cases.privacy_knn BACKEND QUERIES.npy BASE.npy K OUT.npy REPEATS``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from benchmarks.harness import Context, Row, Timing

CASE = "privacy_knn"
K = 16
REPO = Path(__file__).resolve().parents[2]


def _available_bytes() -> int:
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 * 2**30


def _pool(shared: str) -> np.ndarray:
    """``(P, 3, 28, 28)`` float32 BloodMNIST images in [0, 1] (all splits), or seeded smooth noise without data."""
    p = Path(shared) / "bloodmnist.npz"
    if p.exists():
        from benchmarks.privacy_scale import pool_images

        return pool_images(str(p))[0]
    rng = np.random.default_rng(0)
    x = rng.random((17092, 3, 28, 28), dtype=np.float32)
    return np.round((x + np.roll(x, 1, -1)) / 2 * 255) / 255


def sized(pool: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` images: a seeded permutation of ``pool``, topped up with shifted, noised, re-quantized copies."""
    rng = np.random.default_rng(seed)
    parts = [pool[rng.permutation(len(pool))[: min(n, len(pool))]]]
    left = n - len(parts[0])
    while left > 0:
        j = rng.choice(len(pool), min(left, len(pool)), replace=False)
        dy, dx = rng.integers(-2, 3, size=2)
        x = np.roll(pool[j], (int(dy), int(dx)), axis=(-2, -1))
        x = x + rng.normal(0, 0.01, size=x.shape).astype(np.float32)
        parts.append(np.clip(np.round(x * 255), 0, 255).astype(np.float32) / 255)
        left -= len(j)
    return np.concatenate(parts)


def _inputs(ctx: Context, pool: np.ndarray, rep: str, n: int) -> tuple[Path, Path]:
    from synthgen.privacy.knn import normalize_rows
    from synthgen.privacy.pixel import lowres

    work = Path(ctx.workdir) / CASE
    work.mkdir(parents=True, exist_ok=True)
    q, b = work / f"{rep}-{n}-q.npy", work / f"{rep}-{n}-b.npy"
    if not q.exists():
        for path, seed in ((q, 5), (b, 6)):
            if rep == "pixel d147":
                v = lowres(sized(pool, n, seed), 4)
            else:
                v = normalize_rows(np.random.default_rng(seed).normal(size=(n, 64)).astype(np.float32))
            np.save(path, v.numpy())
    return q, b


def peak_rss_gib() -> float:
    """Peak resident memory of this process image in GiB: ``VmHWM`` of ``/proc/self/status``.

    Not ``getrusage().ru_maxrss``: Linux carries that high-water mark across ``exec``, so a child forked from
    a big parent reports at least the parent's size."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def child(backend: str, q_path: str, b_path: str, k: int, out: str, repeats: int) -> None:
    """Inside the subprocess: load, search ``repeats`` times, save the last neighbour ids, print one JSON line."""
    import time

    import torch

    torch.set_num_threads(int(os.environ.get("SYNTHGEN_BENCH_THREADS", 1)))
    from synthgen.privacy.knn import knn

    q, b = torch.from_numpy(np.load(q_path)), torch.from_numpy(np.load(b_path))
    cpu, wall = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        if backend == "naive":
            s, i = torch.topk(q @ b.T, k, dim=1)
            idx = i.numpy()
        else:
            idx = knn(q, b, k, backend=backend)[1]
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - t0)
    np.save(out, idx)
    rss = peak_rss_gib()
    print("RESULT " + json.dumps({"cpu": cpu, "wall": wall, "peak_rss_gib": rss}), flush=True)


def _spawn(backend: str, q: Path, b: Path, out: Path, repeats: int) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-m", "benchmarks.cases.privacy_knn", backend, str(q), str(b), str(K),
                        str(out), str(repeats)], capture_output=True, text=True, cwd=REPO, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"{backend} child failed: {r.stderr[-2000:]}")
    return json.loads(next(ln for ln in r.stdout.splitlines() if ln.startswith("RESULT "))[7:])


def run(ctx: Context) -> list[Row]:
    sizes = [2000, 5000] if ctx.quick else [10_000, 50_000, 100_000]
    if os.environ.get("SYNTHGEN_BENCH_KNN_SIZES"):
        sizes = [int(v) for v in os.environ["SYNTHGEN_BENCH_KNN_SIZES"].split(",")]
    pool = _pool(ctx.shared_data)
    budget = _available_bytes() // 2
    threads = int(os.environ.get("SYNTHGEN_BENCH_THREADS", 1))
    rows: list[Row] = []
    for n in sizes:
        repeats = 3 if n <= 10_000 else 2
        for rep in ("pixel d147", "embedding d64"):
            q, b = _inputs(ctx, pool, rep, n)
            label = f"{n / 1000:g}k x {n / 1000:g}k {rep}"
            naive_bytes = n * n * 4
            results, ids = {}, {}
            for backend in ("naive", "ours", "faiss"):
                if backend == "naive" and naive_bytes > budget:
                    rows.append(Row(CASE, f"naive {label}", "search CPU s", float("nan"), "s", better="lower",
                                    note=f"skipped: the {naive_bytes / 2**30:.1f} GiB similarity matrix exceeds half "
                                         f"of the {2 * budget / 2**30:.1f} GiB available"))
                    continue
                out = Path(ctx.workdir) / CASE / f"ids-{backend}.npy"
                results[backend] = _spawn("torch" if backend == "ours" else backend, q, b, out, repeats)
                ids[backend] = np.load(out)
            ref = f"naive {label}" if "naive" in results else None
            for backend, res in results.items():
                t = Timing(res["cpu"])
                name = f"{backend} {label}"
                same = {o: float((ids[backend] == ids[o]).mean()) for o in ids if o != backend}
                note = (f"{repeats} repeats, wall median {np.median(res['wall']):.2f} s, {threads} thread(s); "
                        f"top-{K} ids equal to " + ", ".join(f"{o} {100 * v:.1f}%" for o, v in same.items()))
                extra = {"wall_s": res["wall"], "cpu_s": res["cpu"], "same_ids": same, "n": n, "k": K}
                r_ref = None if backend == "naive" else ref
                rows.append(Row(CASE, name, "search CPU s", t.median, "s", t.spread, reference=r_ref,
                                better="lower", note=note, extra=extra))
                rows.append(Row(CASE, name, "peak RSS GiB", res["peak_rss_gib"], "GiB", reference=r_ref,
                                better="lower", note="target < 4 GiB at 100k" if n >= 100_000 else ""))
            if ref is None:  # no naive run at this size: compare ours with faiss instead
                for r in rows[-4:]:
                    if r.variant.startswith("ours"):
                        r.reference = f"faiss {label}"
    return rows


if __name__ == "__main__":
    child(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], int(sys.argv[6]))
