"""Timing harness shared by every benchmark case: warm-up, repeats, median and spread, machine facts.

A case is a module in ``benchmarks/cases/`` with ``run(ctx: Context) -> list[Row]``. Every figure is
reported next to a reference measured in the same run on the same machine (``Row.reference``), so the
ratio, not the absolute number, is what carries across machines.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class Context:
    quick: bool
    device: str
    workdir: str
    shared_data: str
    #: diffusion checkpoint for the sampling/gan cases (``--checkpoint`` or ``$SYNTHGEN_BENCH_DDPM_CKPT``)
    checkpoint: str | None = None


@dataclass
class Timing:
    """Seconds per call over ``repeats`` timed calls after ``warmup`` untimed ones."""

    samples: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def spread(self) -> float:
        """Half the min-max range relative to the median (a robust, simple spread for few repeats)."""
        return (max(self.samples) - min(self.samples)) / 2 / self.median if self.median else 0.0


@dataclass
class Row:
    case: str
    variant: str
    metric: str
    value: float
    unit: str
    spread: float = 0.0
    reference: str | None = None  # variant name of the reference in the same case and metric
    ratio: float | None = None  # value / reference value (higher-is-better metrics) or inverse, see better
    better: str = "higher"
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def time_call(fn: Callable[[], Any], warmup: int = 1, repeats: int = 5, device: str = "cpu",
              clock: Callable[[], float] = time.perf_counter) -> Timing:
    """Seconds per call of ``fn``. ``clock=time.process_time`` measures CPU seconds of this process instead
    of wall time (steadier on a machine shared with other jobs; with T busy threads it counts T x)."""
    for _ in range(warmup):
        fn()
    sync(device)
    samples = []
    for _ in range(repeats):
        gc.collect()
        t0 = clock()
        fn()
        sync(device)
        samples.append(clock() - t0)
    return Timing(samples)


def cpu_clock(device: str) -> Callable[[], float]:
    """The clock a case should time with: CPU seconds of this process on CPU, wall seconds on a GPU."""
    return time.perf_counter if device.startswith("cuda") else time.process_time


def set_threads(ctx: Context, default: int = 1) -> int:
    """Torch intra-op threads for a CPU case: ``$SYNTHGEN_BENCH_THREADS`` or ``default`` (1: on a shared
    machine one thread measures the code, two spinning threads measure the neighbours). Returns it."""
    import torch

    n = int(os.environ.get("SYNTHGEN_BENCH_THREADS", default))
    if not ctx.device.startswith("cuda"):
        torch.set_num_threads(n)
    return torch.get_num_threads()


def peak_rss_gib_of(cmd: list[str], env: dict | None = None) -> tuple[float, float, str]:
    """Run ``cmd`` in a child process; return (wall seconds, peak RSS GiB of the child, stdout).

    The peak comes from GNU ``/usr/bin/time -f %M`` wrapped around ``cmd``: ``getrusage(RUSAGE_CHILDREN)``
    would be the maximum over every child so far, and Linux carries a process's RSS high-water mark across
    ``exec``, so a child forked from this (large) process would report at least this process's size.
    Without GNU time the figure is that upper bound.
    """
    import tempfile

    gnu_time = "/usr/bin/time"
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        full = [gnu_time, "-q", "-f", "%M", "-o", rss.name, *cmd] if os.path.exists(gnu_time) else cmd
        t0 = time.perf_counter()
        r = subprocess.run(full, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            raise RuntimeError(f"{cmd} failed: {r.stderr[-2000:]}")
        text = rss.read().strip().splitlines()
    rss_kib = int(text[-1]) if full is not cmd and text else resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, rss_kib / 2**20, r.stdout


def add_ratios(rows: list[Row]) -> list[Row]:
    """Fill ``ratio`` for rows naming a reference in the same (case, metric)."""
    by_key = {(r.case, r.metric, r.variant): r for r in rows}
    for r in rows:
        if r.reference:
            ref = by_key.get((r.case, r.metric, r.reference))
            if ref and ref.value:
                r.ratio = r.value / ref.value if r.better == "higher" else ref.value / r.value
    return rows


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(),
                            "cpu_count": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        info["cpu"] = platform.processor()
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    for mod in ("lightning", "monai", "diffusers", "faiss", "webdataset", "numpy"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - optional libraries
            pass
    return info


def rows_to_markdown(rows: list[Row]) -> str:
    lines = ["| case | variant | metric | median | spread | vs reference |", "|---|---|---|---|---|---|"]
    for r in rows:
        ratio = f"{r.ratio:.2f}x vs {r.reference}" if r.ratio is not None else ("reference" if any(
            o.reference == r.variant and o.case == r.case and o.metric == r.metric for o in rows) else "")
        lines.append(f"| {r.case} | {r.variant} | {r.metric} | {r.value:.4g} {r.unit} | "
                     f"±{100 * r.spread:.0f}% | {ratio} |")
    return "\n".join(lines)


def as_dict(row: Row) -> dict[str, Any]:
    return dataclasses.asdict(row)


def python() -> str:
    return sys.executable
