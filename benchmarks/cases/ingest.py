"""Benchmark case ``ingest``: DICOM folder ingestion speed (600 CT-like 512x512 int16 slices; 120 in --quick).

Reference, measured in the same run: a bare ``pydicom.dcmread(f).pixel_array`` loop over the same files
(decoding only). Variants: :class:`synthgen.data.dicom.DicomReader` (CSV, decode, modality LUT, window,
resize to 28, stack) with one decoding thread and with the default thread count. Metric: slices per second.
Issue target: 600 slices in < 10 s on the 2-core CPU machine.
"""

from __future__ import annotations

import os
from pathlib import Path

from benchmarks.harness import Context, Row, time_call


def run(ctx: Context) -> list[Row]:
    import pydicom
    import torch  # noqa: F401  (imported up front: the reader imports it lazily on the first resize)

    from benchmarks.ingest_dicom import write_series
    from synthgen.data.dicom import DicomReader
    from synthgen.data.filecohort import default_workers

    n = 120 if ctx.quick else 600
    repeats = 2 if ctx.quick else 3
    root = Path(ctx.workdir) / "ingest"
    files = write_series(root, n, 512)

    def bare() -> None:
        for f in files:
            pydicom.dcmread(f).pixel_array

    rows = []
    ref = time_call(bare, warmup=1, repeats=repeats)
    rows.append(Row("ingest", "pydicom dcmread+pixel_array", "slices/s", n / ref.median, "slices/s",
                    spread=ref.spread, note=f"{n} files 512x512 int16, decode only"))
    for workers, name in ((1, "DicomReader 1 thread"), (default_workers(), f"DicomReader {default_workers()} threads")):
        t = time_call(lambda: DicomReader(str(root), image_size=28, workers=workers).read(), warmup=1,
                      repeats=repeats)
        rows.append(Row("ingest", name, "slices/s", n / t.median, "slices/s", spread=t.spread,
                        reference="pydicom dcmread+pixel_array",
                        note=f"{n} slices in {t.median:.2f} s (target 600 in < 10 s) on {os.cpu_count()} CPUs"))
    return rows
