"""The 3D demo cohort (``data=demo3d``): procedural chest CT phantoms written as real NIfTI files plus a labels
CSV under ``data.root`` (``data/demo3d/``), then read through
:class:`~synthgen.data.volumes.NiftiVolumeReader` like any user's NIfTI folder.

TorchIO-style: every random quantity of a patient is first sampled into a recorded :class:`Chest`
(from an explicit ``numpy.random.Generator``), then :func:`render` turns it into Hounsfield units
deterministically. World coordinates are RAS+ mm (x to the patient's right, y anterior, z superior), origin
at the volume's center; each patient lies shifted (up to 12/8/20 mm in x/y/z) and turned (up to 6 degrees
about the scanner axis) on the table.

Anatomy (supine chest CT): an elliptic body cylinder (soft tissue 40 HU) with a fat rim (-100 HU) in air
(-1000 HU); two lung ellipsoids (-850 HU with smoothed vessel-like texture), the left one smaller; the heart
(45 HU) anterior and to the patient's left; a vertebral column (700 HU) posterior; a sternum anteriorly.
Findings (one per patient):

* ``normal``: nothing added;
* ``nodule``: one soft-tissue sphere (radius 6-12 mm, 40 HU) inside the left or right lung;
* ``effusion``: fluid (10 HU) filling the dependent (posterior, supine) part of one or both lungs;
* ``pneumothorax`` (rare): the non-dependent (anterior) part of one lung is air without texture (-1000 HU).

Files: ``<root>/<PatientID>/ct.nii.gz`` int16 HU (no scaling), voxel grid ``source_shape`` ``[D, H, W]`` at
``source_spacing`` ``[sz, sy, sx]`` mm, stored in a per-patient orientation drawn from RAS / LAS / LPS (the
reader canonicalizes them all), gzip without timestamp: byte-identical on every run. ``labels.csv``
``path,label,patient_id``; ``README.txt`` marker and ``manifest.json`` as in :mod:`synthgen.data.demo`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from scipy.ndimage import gaussian_filter

from ..errors import ConfigError
from ..io import atomic_path, sha256_file, write_json
from .cohort import Cohort
from .demo import MANIFEST, MARKER, _up_to_date, check_demo_target, patient_classes
from .volumes import NiftiVolumeReader

FINDINGS_3D = ("normal", "nodule", "effusion", "pneumothorax")
ORIENTATIONS = {"RAS": (1, 1, 1), "LAS": (-1, 1, 1), "LPS": (-1, -1, 1)}


@dataclass(frozen=True)
class Chest:
    """One patient's recorded parameters (mm, HU; see the module docstring for the coordinates)."""

    kind: str
    shift: tuple[float, float, float]  # patient position on the table: (x, y, z) offset of the anatomy
    yaw: float           # rotation about the scanner (z) axis, degrees
    body_a: float        # body half-width (x)
    body_b: float        # body half-depth (y)
    body_y: float
    lung_x: float        # lung centers at +-lung_x
    lung_y: float
    lung_z: float
    lung_a: float
    lung_b: float
    lung_c: float
    left_scale: float    # the patient's left lung (x < 0) is smaller: the heart sits there
    heart_x: float
    heart_y: float
    heart_z: float
    heart_r: float
    side: int            # finding side: +1 = the patient's right lung (x > 0), -1 = left
    bilateral: bool
    nodule_u: tuple[float, float, float]  # nodule center as a fraction of the lung's semi-axes
    nodule_r: float
    level: float         # effusion / pneumothorax boundary as a fraction of the lung depth
    texture_seed: int
    noise_seed: int
    orientation: str


def sample_chest(kind: str, rng: np.random.Generator) -> Chest:
    """Draw one patient's :class:`Chest` (every random quantity, including the texture/noise seeds)."""
    if kind not in FINDINGS_3D:
        raise ConfigError("data.prevalence", f"unknown class {kind!r}; the 3D phantom knows {list(FINDINGS_3D)}")
    u = rng.uniform(-0.45, 0.45, size=3)
    shift = rng.uniform([-12.0, -8.0, -20.0], [12.0, 8.0, 20.0])
    return Chest(
        kind=kind, shift=(float(shift[0]), float(shift[1]), float(shift[2])), yaw=float(rng.uniform(-6, 6)),
        body_a=float(rng.uniform(140, 165)), body_b=float(rng.uniform(95, 115)),
        body_y=float(rng.uniform(-8, 8)), lung_x=float(rng.uniform(62, 75)), lung_y=float(rng.uniform(-15, 0)),
        lung_z=float(rng.uniform(5, 30)), lung_a=float(rng.uniform(45, 55)), lung_b=float(rng.uniform(62, 75)),
        lung_c=float(rng.uniform(95, 120)), left_scale=float(rng.uniform(0.8, 0.9)),
        heart_x=float(rng.uniform(-35, -20)), heart_y=float(rng.uniform(20, 35)), heart_z=float(rng.uniform(-45, -25)),
        heart_r=float(rng.uniform(45, 55)), side=int(rng.choice([-1, 1])), bilateral=bool(rng.random() < 0.3),
        nodule_u=(float(u[0]), float(u[1]), float(u[2])), nodule_r=float(rng.uniform(6, 12)),
        level=float(rng.uniform(0.3, 0.5)), texture_seed=int(rng.integers(2**31)),
        noise_seed=int(rng.integers(2**31)), orientation=str(rng.choice(list(ORIENTATIONS))))


def _grid(shape: Sequence[int], spacing: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World ``(z, y, x)`` mm of every voxel of a ``(D, H, W)`` grid centered at the origin."""
    axes = [(np.arange(n) - (n - 1) / 2) * s for n, s in zip(shape, spacing)]
    return np.meshgrid(*axes, indexing="ij")


def render(chest: Chest, shape: Sequence[int], spacing: Sequence[float]) -> np.ndarray:
    """``chest`` -> ``(D, H, W)`` float32 HU on the canonical grid (D superior, H anterior, W to the right)."""
    z, y, x = _grid(shape, spacing)
    t = np.deg2rad(chest.yaw)  # world -> patient coordinates: undo the table offset and the yaw
    x, y = x - chest.shift[0], y - chest.shift[1]
    x, y, z = np.cos(t) * x + np.sin(t) * y, -np.sin(t) * x + np.cos(t) * y, z - chest.shift[2]
    hu = np.full(z.shape, -1000.0, dtype=np.float32)
    body = (x / chest.body_a) ** 2 + ((y - chest.body_y) / chest.body_b) ** 2
    hu[body <= 1.0] = -100.0
    hu[body <= 0.85] = 40.0
    texture = gaussian_filter(np.random.default_rng(chest.texture_seed).standard_normal(z.shape), 1.0)
    texture *= 60.0 / max(float(texture.std()), 1e-6)
    lungs = np.zeros(z.shape, dtype=bool)
    for sign in (1, -1):
        scale = 1.0 if sign > 0 else chest.left_scale
        a, b, c = chest.lung_a * scale, chest.lung_b, chest.lung_c * scale
        cx = sign * chest.lung_x
        inside = ((x - cx) / a) ** 2 + ((y - chest.lung_y) / b) ** 2 + ((z - chest.lung_z) / c) ** 2 <= 1.0
        hu[inside] = -850.0 + texture[inside]
        lungs |= inside
        hit = chest.bilateral or sign == chest.side
        depth = (y - (chest.lung_y - b)) / (2 * b)  # 0 posterior .. 1 anterior edge of this lung
        if chest.kind == "nodule" and sign == chest.side:
            ux, uy, uz = chest.nodule_u
            ball = (x - cx - ux * a) ** 2 + (y - chest.lung_y - uy * b) ** 2 + (z - chest.lung_z - uz * c) ** 2
            hu[inside & (ball <= chest.nodule_r ** 2)] = 40.0
        elif chest.kind == "effusion" and hit:
            hu[inside & (depth < chest.level)] = 10.0
        elif chest.kind == "pneumothorax" and sign == chest.side:
            hu[inside & (depth > 1.0 - chest.level)] = -1000.0
    heart = (x - chest.heart_x) ** 2 + (y - chest.heart_y) ** 2 + ((z - chest.heart_z) / 1.2) ** 2
    hu[heart <= chest.heart_r ** 2] = 45.0
    spine = x ** 2 + (y - (chest.body_y - chest.body_b + 30)) ** 2 <= 16.0 ** 2
    hu[spine] = 700.0
    sternum = (np.abs(x) <= 12) & (np.abs(y - (chest.body_y + chest.body_b - 14)) <= 5) & (z <= 60)
    hu[sternum] = 400.0
    hu += np.random.default_rng(chest.noise_seed).normal(0.0, 12.0, size=z.shape).astype(np.float32)
    return hu


def nifti_bytes(hu: np.ndarray, spacing: Sequence[float], orientation: str) -> bytes:
    """``.nii.gz`` bytes of a canonical ``(D, H, W)`` HU volume stored in ``orientation`` (int16, no scaling,
    gzip without timestamp)."""
    import nibabel as nib

    from .resample import ras_affine

    data = np.rint(np.clip(hu, -1024, 3071)).astype(np.int16).transpose(2, 1, 0)  # (X, Y, Z) in RAS
    affine = ras_affine(spacing, hu.shape)
    flips = ORIENTATIONS[orientation]
    for axis, f in enumerate(flips):
        if f < 0:  # store this axis reversed; the affine keeps every voxel at its world position
            data = data[(slice(None),) * axis + (slice(None, None, -1),)]
            n = data.shape[axis]
            affine[:3, 3] += affine[:3, axis] * (n - 1)
            affine[:3, axis] *= -1
    img = nib.Nifti1Image(np.ascontiguousarray(data), affine)
    img.header.set_data_dtype(np.int16)
    img.header.set_xyzt_units("mm")
    img.header["descrip"] = b"synthgen 3D chest phantom; not a patient"
    img.set_sform(affine, code="scanner")
    img.set_qform(affine, code="scanner")
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=6) as gz:
        gz.write(img.to_bytes())
    return buf.getvalue()


def _writer_hash() -> str:
    import nibabel

    h = hashlib.sha256(Path(__file__).read_bytes())
    h.update((Path(__file__).parent / "resample.py").read_bytes())
    h.update(nibabel.__version__.encode())
    return h.hexdigest()[:16]


def write_demo3d(root: str | Path, *, patients: int, source_shape: Sequence[int], source_spacing: Sequence[float],
                 prevalence: Mapping[str, float], seed: int, labels: str = "labels.csv") -> Path:
    """Write the 3D phantom cohort into ``root`` atomically (reused when its manifest still matches).

    Raises :class:`InputError` if ``root`` holds something other than a synthgen demo cohort.
    """
    root = Path(root)
    check_demo_target(root, prevalence, FINDINGS_3D, "the 3D phantom")
    shape = [int(s) for s in source_shape]
    spacing = [float(s) for s in source_spacing]
    params: dict[str, Any] = {"writer": _writer_hash(), "patients": int(patients), "source_shape": shape,
                              "source_spacing": spacing, "prevalence": {k: float(v) for k, v in prevalence.items()},
                              "seed": int(seed), "labels": str(labels)}
    if _up_to_date(root, params):
        return root
    rng = np.random.default_rng([int(seed), 20260301])
    kinds = patient_classes(int(patients), prevalence, rng)
    rows = ["path,label,patient_id"]
    with atomic_path(root) as tmp:
        tmp.mkdir(parents=True)
        recorded = {}
        for i, kind in enumerate(kinds):
            pid = f"DEMO3D-{i + 1:04d}"
            chest = sample_chest(kind, rng)
            rel = f"{pid}/ct.nii.gz"
            (tmp / pid).mkdir()
            (tmp / rel).write_bytes(nifti_bytes(render(chest, shape, spacing), spacing, chest.orientation))
            rows.append(f"{rel},{kind},{pid}")
            recorded[pid] = asdict(chest)
        (tmp / labels).write_text("\n".join(rows) + "\n", encoding="utf-8")
        write_json(tmp / "parameters.json", recorded)
        (tmp / MARKER).write_text(
            "Synthetic 3D chest phantom NIfTI cohort written by synthgen (data=demo3d). Invented patients; no "
            "real data.\nRegenerated by every prepare run: do not put your own files here.\n", encoding="utf-8")
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        write_json(tmp / MANIFEST, {"params": params,
                                    "sha256": {p.relative_to(tmp).as_posix(): sha256_file(p) for p in files}})
    return root


class Phantom3DReader:
    """``data=demo3d``: write the phantom NIfTI cohort under ``root``, then read it with
    :class:`~synthgen.data.volumes.NiftiVolumeReader`.

    No argument has a default: the reader is built from ``conf/data/demo3d.yaml`` (plus ``volume``, which the
    prepare stage passes from ``data.volume``).
    """

    def __init__(self, *, root: str, labels: str, image_size: int | None, classes: Sequence[str] | None,
                 window: Sequence[float] | None, patients: int, source_shape: Sequence[int],
                 source_spacing: Sequence[float], prevalence: Mapping[str, float], seed: int,
                 workers: int | None, volume: Mapping[str, Any] | None):
        self.root, self.labels = Path(root), labels
        if prevalence and classes and sorted(prevalence) != sorted(classes):
            raise ConfigError("data.prevalence", f"classes {sorted(prevalence)} differ from data.classes "
                                                 f"{sorted(classes)}")
        self.cohort_args = dict(patients=patients, source_shape=source_shape, source_spacing=source_spacing,
                                prevalence=dict(prevalence), seed=seed)
        self.reader = NiftiVolumeReader(str(root), labels, image_size=image_size, classes=classes, window=window,
                                        workers=workers, volume=volume)

    def read(self) -> Cohort:
        write_demo3d(self.root, labels=self.labels, **self.cohort_args)
        cohort = self.reader.read()
        cohort.source_kind = "demo3d"
        return cohort
