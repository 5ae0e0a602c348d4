"""The embedded demo cohort (``data=demo``, the default): procedural chest-radiograph phantoms written as real
DICOM files plus a labels CSV under ``data.root`` (``data/demo/``), then ingested through
:class:`~synthgen.data.dicom.DicomReader` like any user's DICOM folder.

What is written (all seeded from ``data.seed``; the bytes are identical on every run):

* ``<root>/<PatientID>/img<k>.dcm``: CR Image Storage, explicit VR little endian, 12 bits stored in 16
  (unsigned), ``source_size`` px square (null: ``max(64, data.image_size)``, :func:`render_size`);
  RescaleSlope/Intercept vary per image (1/-1024, 0.75/-1024, 2/-1100) and map to one physical scale
  (-1000 = air .. 2000 = bone); ~30% of images are MONOCHROME1 (values mirrored so they display identically);
  every file carries WindowCenter 500 / WindowWidth 3000.
  Headers hold invented patient names, IDs, birth dates and sexes, fixed study dates, and UIDs derived
  from non-PHI strings (patient index, image index, seed).
* ``<root>/labels.csv``: ``path,label,patient_id``.
* ``<root>/README.txt``: a marker; a non-empty ``root`` without it is never overwritten.
* ``<root>/manifest.json``: the parameters and every file's sha256; when both still match, the folder is
  reused as is (the bytes would be identical anyway), otherwise it is rewritten.

Classes: ``normal``, ``nodule``, ``effusion`` and the rare ``pneumothorax`` (3% of patients by default);
all images of a patient share the patient's finding, with per-image positioning, exposure and noise.
Default size: 400 patients x 2 images, 64 px sources resized to ``data.image_size`` (28, like MedMNIST,
so the downstream demo pipeline stays fast on a CPU). At ``data.image_size`` 64 and above the phantoms are
rendered natively at that size (``dvc exp run -S data.image_size=128`` re-renders the cohort at 128 px); below 64
they are rendered at 64 px and shrunk, as before.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..errors import ConfigError, InputError
from ..io import atomic_path, sha256_file, write_json
from .cohort import Cohort
from .dicom import DicomReader
from .dicom_writer import FakePatient, write_dicom
from .phantom import FINDINGS, render, sample_anatomy, sample_finding, sample_view

MARKER = "README.txt"
MANIFEST = "manifest.json"
# The manifest records a hash of the code that renders and encodes the files, so a folder written by any
# other version of it is rewritten rather than silently reused.
_WRITER_SOURCES = ("demo.py", "phantom.py", "dicom_writer.py")
# (slope, intercept): stored 12-bit values that all map onto -1000..2000 after the modality LUT.
RESCALES = ((1.0, -1024.0), (0.75, -1024.0), (2.0, -1100.0))
WINDOW = (500.0, 3000.0)
_GIVEN = ("Ada", "Bea", "Cal", "Dee", "Eli", "Fay", "Gus", "Hal", "Ivy", "Jon", "Kit", "Lou", "Max", "Ned",
          "Oli", "Pam", "Quin", "Ray", "Sue", "Tom", "Uma", "Vic", "Wes", "Xia", "Yul", "Zoe")


def encode(attenuation: np.ndarray, slope: float, intercept: float, mono1: bool) -> np.ndarray:
    """Attenuation ``[0, 1]`` -> 12-bit stored values (uint16 in 0..4095).

    Physical value ``v = 3000 a - 1000`` (air -1000 .. bone 2000); MONOCHROME1 stores ``2c - 1 - v`` with
    ``c`` the window centre (the mirror under DICOM's linear window ``(x - c + 0.5) / (w - 1) + 0.5``, so
    that after inversion it displays exactly like MONOCHROME2); stored ``= round((v - intercept) / slope)``.
    """
    value = np.asarray(attenuation, dtype=np.float64) * 3000.0 - 1000.0
    if mono1:
        value = 2 * WINDOW[0] - 1 - value
    return np.clip(np.rint((value - intercept) / slope), 0, 4095).astype(np.uint16)


def patient_classes(n_patients: int, prevalence: Mapping[str, float], rng: np.random.Generator) -> list[str]:
    """Each patient's class: ``floor(share * n)`` patients per class, the remainder to the most common
    class, in seeded random order (so a 3% class never exceeds 3%)."""
    counts = {k: int(np.floor(float(v) * n_patients)) for k, v in prevalence.items()}
    top = max(prevalence, key=lambda k: float(prevalence[k]))
    counts[top] += n_patients - sum(counts.values())
    classes = [k for k in prevalence for _ in range(counts[k])]
    return [classes[i] for i in rng.permutation(len(classes))]


#: below this side the phantoms are rendered at it and shrunk by the DICOM reader (the 28 px demo's path).
MIN_RENDER_SIZE = 64


def render_size(source_size: int | None, image_size: int | None) -> int:
    """Side the DICOM files are written at: ``source_size`` when set, else ``max(64, image_size)`` (64 when
    ``image_size`` is null, the source's own size)."""
    if source_size is not None:
        return int(source_size)
    return max(MIN_RENDER_SIZE, int(image_size)) if image_size is not None else MIN_RENDER_SIZE


def check_demo_target(root: Path, prevalence: Mapping[str, float], known: Sequence[str], phantom: str) -> None:
    """Refuse unknown classes in ``prevalence`` (ConfigError naming ``data.prevalence``) and a non-empty ``root``
    that is not a synthgen demo folder (InputError: a demo writer never overwrites someone's data)."""
    unknown = [k for k in prevalence if k not in known]
    if unknown:
        raise ConfigError("data.prevalence", f"unknown classes {unknown}; {phantom} knows {list(known)}")
    if root.exists() and any(root.iterdir()) and not (root / MARKER).exists():
        raise InputError(root, f"exists and is not a synthgen demo folder (no {MARKER}); refusing to overwrite")


def write_demo(root: str | Path, *, patients: int, images_per_patient: int, source_size: int,
               prevalence: Mapping[str, float], seed: int, labels: str = "labels.csv") -> Path:
    """Write the demo DICOM cohort into ``root`` atomically (replacing a previous demo there).

    The cohort's parameters have no defaults here: ``conf/data/demo.yaml`` holds them (the only source).

    Returns the folder. Raises :class:`InputError` if ``root`` holds something other than a demo cohort.
    """
    root = Path(root)
    prevalence = dict(prevalence)
    check_demo_target(root, prevalence, FINDINGS, "the phantom")
    params = {"writer": _writer_hash(), "patients": int(patients), "images_per_patient": int(images_per_patient),
              "source_size": int(source_size), "prevalence": {k: float(v) for k, v in prevalence.items()},
              "seed": int(seed), "labels": str(labels)}
    if _up_to_date(root, params):
        return root
    rng = np.random.default_rng([int(seed), 20240101])
    kinds = patient_classes(int(patients), prevalence, rng)
    rows = ["path,label,patient_id"]
    with atomic_path(root) as tmp:
        tmp.mkdir(parents=True)
        for i, kind in enumerate(kinds):
            pid = f"DEMO-{i + 1:04d}"
            anatomy, finding = sample_anatomy(rng), sample_finding(kind, rng)
            birth = _dt.date(1940, 1, 1) + _dt.timedelta(days=int(rng.integers(0, 60 * 365)))
            person = FakePatient(name=f"PHANTOM{i + 1:04d}^{_GIVEN[i % len(_GIVEN)]}", patient_id=pid,
                                 birth_date=birth.strftime("%Y%m%d"), sex=str(rng.choice(["F", "M"])))
            for k in range(int(images_per_patient)):
                view = sample_view(rng)
                slope, intercept = RESCALES[int(rng.integers(len(RESCALES)))]
                mono1 = bool(rng.random() < 0.3)
                stored = encode(render(anatomy, finding, view, int(source_size)), slope, intercept, mono1)
                rel = f"{pid}/img{k + 1}.dcm"
                visit = (_dt.date(2024, 1, 1) + _dt.timedelta(days=30 * k)).strftime("%Y%m%d")
                write_dicom(tmp / rel, stored, bits_stored=12, signed=False,
                            photometric="MONOCHROME1" if mono1 else "MONOCHROME2", rescale=(slope, intercept),
                            window=WINDOW, patient=person, uid_key=(f"demo{seed}", pid, k),
                            study_key=(f"demo{seed}", pid, k), series_key=(f"demo{seed}", pid, k),
                            instance_number=1, series_number=k + 1, study_date=visit)
                rows.append(f"{rel},{kind},{pid}")
        (tmp / labels).write_text("\n".join(rows) + "\n", encoding="utf-8")
        (tmp / MARKER).write_text(
            "Synthetic phantom DICOM cohort written by synthgen (data=demo). Invented patients; no real data.\n"
            "Regenerated by every prepare run: do not put your own files here.\n", encoding="utf-8")
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        write_json(tmp / MANIFEST, {"params": params,
                                    "sha256": {p.relative_to(tmp).as_posix(): sha256_file(p) for p in files}})
    return root


def _writer_hash() -> str:
    here = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for name in _WRITER_SOURCES:
        h.update((here / name).read_bytes())
    import pydicom

    h.update(pydicom.__version__.encode())  # the file bytes also depend on pydicom's writer
    return h.hexdigest()[:16]


def _up_to_date(root: Path, params: dict) -> bool:
    """True when ``root`` already holds exactly the cohort ``params`` describe (every file's hash checked,
    so an edited or deleted file triggers a rewrite). Writing costs seconds; checking, milliseconds."""
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if manifest.get("params") != params:
        return False
    listed = manifest.get("sha256", {})
    present = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} - {MANIFEST}
    if present != set(listed):
        return False
    return all(sha256_file(root / rel) == digest for rel, digest in listed.items())


class DemoReader:
    """``data=demo``: write the phantom DICOM cohort under ``root``, then read it with :class:`DicomReader`.

    Args:
        root: where the DICOM files and ``labels`` CSV are written (``data/demo``).
        image_size, classes, window, workers: passed to :class:`DicomReader`.
        patients, images_per_patient, prevalence, seed: the cohort (see :func:`write_demo`).
        source_size: side of the written DICOM files; null = :func:`render_size` (``max(64, image_size)``).

    No argument has a default: the reader is built from ``conf/data/demo.yaml`` (the one source of them).
    """

    def __init__(self, *, root: str, labels: str, image_size: int | None, classes: Sequence[str] | None,
                 window: Sequence[float] | None, patients: int, images_per_patient: int, source_size: int | None,
                 prevalence: Mapping[str, float], seed: int, workers: int | None):
        self.root, self.labels = Path(root), labels
        self.cohort_args = dict(patients=patients, images_per_patient=images_per_patient,
                                source_size=render_size(source_size, image_size), prevalence=prevalence, seed=seed)
        if prevalence and classes and sorted(prevalence) != sorted(classes):
            raise ConfigError("data.prevalence", f"classes {sorted(prevalence)} differ from data.classes "
                                                 f"{sorted(classes)}")
        self.reader = DicomReader(str(root), labels, image_size=image_size, classes=classes, window=window,
                                  workers=workers)

    def read(self) -> Cohort:
        write_demo(self.root, labels=self.labels, **self.cohort_args)
        cohort = self.reader.read()
        cohort.source_kind = "demo"
        return cohort

