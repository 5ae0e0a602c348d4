"""No PHI, ever: identifying strings in the source DICOM headers must not reach the export, metrics or reports.

The pipeline runs in stages (:func:`run_pipeline`); each stage uses the real implementation where this
checkout has it and a contract-exact stand-in otherwise, so extending the test to the full pipeline means
replacing a stand-in with the stage call:

- prepare: ``data=dicom`` (the ingest reader) when ``conf/data/dicom.yaml`` exists, else the pixels decoded
  with pydicom (``pixel_array`` only, as a reader would).
- train/generate/privacy: stand-in: the audited cohort built from the prepared training pixels with
  :func:`export_fixture.build_audited` (worst case for PHI: the "synthetic" images are the real ones).
- export: the real stage, every format (shards, index, card, DICOM, NIfTI).
"""

from __future__ import annotations

import csv
import gzip
import tarfile
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from export_fixture import REPO, build_audited, export_overrides
from synthgen.config import compose

PHI = {
    "PatientName": "Quixley^Zebulon^Marmaduke",
    "PatientID": "PID-8675309-QX",
    "PatientBirthDate": "19450317",
    "InstitutionName": "Saint Elsewhere Quarantine Hospital",
    "InstitutionAddress": "42 Wallaby Way, Sydney",
    "AccessionNumber": "ACC55501ZZ",
    "ReferringPhysicianName": "Hieronymus^Bosch",
    "OperatorsName": "Tech^Wilhelmina",
    "StudyDescription": "CHEST Quixley private study",
    "OtherPatientIDs": "MRN-000424242",
}
CLASSES = ("effusion", "normal")


def forbidden_strings() -> list[str]:
    """Every PHI value, its name components, and the birth date written other ways."""
    out = set()
    for v in PHI.values():
        out.add(v)
        out.update(p for p in v.replace("^", " ").split() if len(p) >= 5)
    out.update({"1945-03-17", "17.03.1945", "03/17/1945", "Quixley Zebulon"})
    return sorted(out, key=len)


def write_phi_source(src: Path, n_per_patient: int = 3) -> Path:
    """DICOM CT files of 4 patients (2 per class) whose headers carry distinctive PHI, plus labels.csv."""
    rng = np.random.default_rng(0)
    src.mkdir(parents=True)
    rows = []
    for p in range(4):
        label = CLASSES[p % 2]
        for k in range(n_per_patient):
            ds = Dataset()
            ds.file_meta = FileMetaDataset()
            ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.SOPClassUID = CTImageStorage
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
            for kw, value in PHI.items():
                setattr(ds, kw, f"{value}{p}" if kw == "PatientID" else value)
            ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = "20190102"
            ds.add_new(0x00291010, "LO", f"private note about {PHI['PatientName']}")  # private tag
            ds.Modality, ds.ImageType = "CT", ["ORIGINAL", "PRIMARY", "AXIAL"]
            ds.Rows = ds.Columns = 16
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
            ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
            pixels = rng.integers(0, 1500, size=(16, 16)) + (600 if label == "effusion" else 0)
            ds.PixelData = pixels.astype("<u2").tobytes()
            name = f"p{p}_{k}.dcm"
            ds.save_as(src / name, enforce_file_format=True)
            rows.append({"path": name, "label": label, "patient_id": f"{PHI['PatientID']}{p}"})
    with open(src / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "label", "patient_id"])
        w.writeheader()
        w.writerows(rows)
    return src


def stage_prepare(src: Path, work: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Source -> (train images (N, 1, H, W) uint16, labels, class names)."""
    if (REPO / "conf" / "data" / "dicom.yaml").exists():
        from synthgen.data.prepare import prepare
        from synthgen.data.prepared import load_split

        cfg = compose(["data=dicom", f"data.root={src}", "data.labels=labels.csv", "data.image_size=16",
                       *export_overrides(work)])
        prepare(cfg)
        train = load_split(work / "data/prepared", "train", as_float=False)
        return train.images, train.labels, list(train.class_names)
    images, labels = [], []
    with open(src / "labels.csv") as f:
        for row in csv.DictReader(f):
            images.append(pydicom.dcmread(src / row["path"]).pixel_array[None].astype(np.uint16))
            labels.append(CLASSES.index(row["label"]))
    return np.stack(images), np.asarray(labels), list(CLASSES)


def run_pipeline(src: Path, work: Path) -> Path:
    """Run every available stage on ``src``; returns the export folder."""
    images, labels, class_names = stage_prepare(src, work)
    # Stand-in for train -> generate -> evaluate -> privacy (replace with those stages when they land):
    build_audited(work, images=images, labels=labels, class_names=class_names, extras=False)
    from synthgen.export import export

    return export(compose(export_overrides(work, format="dicom+nifti")))


def _texts(path: Path) -> list[bytes]:
    """The bytes of ``path`` plus, for containers, of what they hold (gzip members, tar members)."""
    data = path.read_bytes()
    out = [data]
    if path.name.endswith(".gz"):
        out.append(gzip.decompress(data))
    if path.suffix == ".tar":
        with tarfile.open(path) as tf:
            out += [tf.extractfile(m).read() for m in tf if m.isfile()]
    return out


def find_phi(*roots: Path) -> list[str]:
    hits = []
    needles = forbidden_strings()
    for root in roots:
        if not root.exists():
            continue
        for p in sorted(q for q in root.rglob("*") if q.is_file()):
            for blob in _texts(p):
                low = blob.lower()
                hits += [f"{p}: {s!r}" for s in needles if s.lower().encode() in low]
    return sorted(set(hits))


def test_no_phi_reaches_export_metrics_or_reports(tmp_path):
    src = write_phi_source(tmp_path / "source")
    assert find_phi(src), "the scanner must see the PHI in the source (positive control)"
    work = tmp_path / "work"
    out = run_pipeline(src, work)
    assert sorted(p.name for p in out.iterdir())[:3] == ["README.md", "dicom", "index.json"]
    assert len(list((out / "dicom").iterdir())) > 0 and len(list((out / "nifti").iterdir())) > 0
    assert find_phi(out, work / "metrics", work / "reports") == []
    for f in (out / "dicom").iterdir():  # no date, no source UID, no private tag in the synthetic DICOM
        ds = pydicom.dcmread(f)
        assert not any(el.tag.is_private for el in ds)
        assert ds.StudyDate == "" and "PatientBirthDate" in ds and ds.PatientBirthDate == ""
    source_uids = {str(pydicom.dcmread(p).SOPInstanceUID) for p in src.glob("*.dcm")}
    assert not any(u.encode() in (out / "index.json").read_bytes() for u in source_uids)
    for f in (out / "dicom").iterdir():
        raw = f.read_bytes()
        assert not any(u.encode() in raw for u in source_uids)
