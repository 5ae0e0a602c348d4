"""Ingestion speed of a DICOM folder: N CT-like 512x512 int16 slices through DicomReader.

    python benchmarks/ingest_dicom.py [--slices 600] [--size 512] [--image-size 28] [--workers 1 2 4]

Writes the slices into a temp dir (not timed), then times, in the same run:
* reference: a bare loop ``pydicom.dcmread(f).pixel_array`` (decoding only, one thread);
* DicomReader.read() (CSV parse, decode, modality LUT, window, resize, stack) per worker count.
Prints one JSON object with seconds and the ratio reader / reference. Target: 600 slices < 10 s.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from synthgen.data.dicom import DicomReader  # noqa: E402
from synthgen.data.dicom_writer import write_dicom  # noqa: E402


def ct_slice(k: int, n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """A CT-like axial slice in stored units (HU + 1024 intercept): air, body ellipse, bone ring, noise."""
    t = np.linspace(-1, 1, size)
    y, x = np.meshgrid(t, t, indexing="ij")
    r = (x / 0.8) ** 2 + (y / (0.6 + 0.1 * np.sin(np.pi * k / n))) ** 2
    hu = np.where(r < 1, 40.0, -1000.0)
    hu[(r > 0.85) & (r < 1)] = 700.0
    hu += rng.normal(0, 15, size=hu.shape)
    return np.clip(np.rint(hu), -1024, 3071).astype(np.int16)


def write_series(root: Path, slices: int, size: int, seed: int = 0) -> list[Path]:
    """Write ``slices`` CT-like int16 DICOM files + ``labels.csv`` (10 patients' worth of ids) under ``root``."""
    rng = np.random.default_rng(seed)
    lines = ["path,label,patient_id"]
    for k in range(slices):
        rel = f"series/slice{k:04d}.dcm"
        write_dicom(root / rel, ct_slice(k, slices, size, rng), bits_stored=16, signed=True,
                    rescale=(1.0, -0.0), window=(40, 400), uid_key=("bench", k), series_key=("bench",),
                    instance_number=k + 1)
        lines.append(f"{rel},{'ab'[k % 2]},patient{k // 60:03d}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return sorted((root / "series").iterdir())


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slices", type=int, default=600)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--image-size", type=int, default=28)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    args = ap.parse_args(argv)
    import pydicom

    t0 = time.perf_counter()
    import torch  # noqa: F401  (resizing imports it lazily; time the import apart from ingestion)

    torch_import_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory(prefix="synthgen-ingest-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        files = write_series(root, args.slices, args.size)
        write_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        for f in files:
            pydicom.dcmread(f).pixel_array
        reference_s = time.perf_counter() - t0

        results = {}
        for w in args.workers:
            t0 = time.perf_counter()
            c = DicomReader(str(root), image_size=args.image_size, workers=w).read()
            results[w] = time.perf_counter() - t0
            assert len(c) == args.slices and c.images.shape[-1] == args.image_size
    out = {"slices": args.slices, "size": args.size, "image_size": args.image_size, "cpus": os.cpu_count(),
           "write_s": round(write_s, 2),
           "torch_import_s_not_counted": round(torch_import_s, 2),
           "reference_dcmread_pixel_array_s": round(reference_s, 2),
           "reader_s": {str(w): round(s, 2) for w, s in results.items()},
           "ratio_reader_over_reference": {str(w): round(s / reference_s, 2) for w, s in results.items()}}
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
