"""Write synthetic grayscale DICOM files (Computed Radiography Image Storage) from stored pixel values.

Used by the demo cohort and by tests that need DICOM with a given bit depth, signedness, rescale,
photometric interpretation or frame count. Headers are built from an allow-list of attributes (never by
editing a real header), carry only the fake patient data passed in, are marked as synthetic
(ImageType DERIVED, Contributing Equipment = "Synthesizing Equipment", optionally SyntheticData = YES), and use
UIDs derived deterministically from non-PHI strings (``generate_uid(entropy_srcs=...)``) and fixed dates, so
the bytes are identical on every run. Transfer syntax: explicit VR little endian.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
MULTIFRAME_GRAY_WORD_SC = "1.2.840.10008.5.1.4.1.1.7.3"


@dataclass(frozen=True)
class FakePatient:
    """Invented identity written into the header (never derived from real people)."""

    name: str = "PHANTOM^DEMO"
    patient_id: str = "DEMO-0000"
    birth_date: str = "19700101"
    sex: str = "O"


def uid(*parts: object) -> str:
    """A deterministic UID from non-PHI strings (pydicom's UID root + a hash of ``parts``)."""
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=["synthgen"] + [str(p) for p in parts])


def build_dataset(stored: np.ndarray, *, bits_stored: int = 12, signed: bool = False,
                  photometric: str = "MONOCHROME2", rescale: tuple[float, float] | None = (1.0, 0.0),
                  window: tuple[float, float] | None = None, patient: FakePatient = FakePatient(),
                  uid_key: Sequence[object] = ("default",), study_key: Sequence[object] | None = None,
                  series_key: Sequence[object] | None = None, instance_number: int = 1,
                  series_number: int = 1, study_date: str = "20000101", body_part: str = "CHEST",
                  view_position: str = "PA", sop_class: str | None = None, synthetic_flag: bool = False):
    """Build a grayscale DICOM dataset around ``stored`` pixel values.

    Args:
        stored: ``(H, W)`` or ``(F, H, W)`` integers that fit ``bits_stored`` bits (signed if ``signed``).
            Bits allocated: 8 when ``bits_stored <= 8``, else 16.
        rescale: ``(slope, intercept)`` of the modality LUT, or None to omit it.
        window: ``(center, width)`` written as WindowCenter/WindowWidth, or None.
        uid_key, study_key, series_key: non-PHI strings the SOP/study/series UIDs are derived from.
        sop_class: default CR Image Storage for one frame, Multi-frame Grayscale Word SC for several.
        synthetic_flag: write Synthetic Data (0008,001C) = YES. Off by default: the dicom3tools release
            in Debian/Ubuntu (2022-06) predates the attribute and ``dciodvfy`` reports it as an error; the
            files are marked synthetic anyway by ImageType DERIVED and the Contributing Equipment
            Sequence (109100 "Synthesizing Equipment").
    Returns:
        a ``pydicom.Dataset`` with file meta, ready for ``save_as(path, enforce_file_format=True)``.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID

    stored = np.asarray(stored)
    frames = stored.shape[0] if stored.ndim == 3 else 1
    bits_alloc = 8 if bits_stored <= 8 else 16
    lo, hi = (-(1 << (bits_stored - 1)), (1 << (bits_stored - 1)) - 1) if signed else (0, (1 << bits_stored) - 1)
    if stored.min() < lo or stored.max() > hi:
        raise ValueError(f"stored values {stored.min()}..{stored.max()} do not fit {bits_stored}-bit "
                         f"{'signed' if signed else 'unsigned'}")
    dtype = {(8, False): np.uint8, (8, True): np.int8, (16, False): np.uint16, (16, True): np.int16}[
        (bits_alloc, signed)]
    if sop_class is None:
        sop_class = CR_IMAGE_STORAGE if frames == 1 else MULTIFRAME_GRAY_WORD_SC
    study_key = tuple(study_key or uid_key[:1])
    series_key = tuple(series_key or uid_key[:2])
    sop_uid = uid("instance", *uid_key)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "SYNTHGEN"

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = study_date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
    ds.AccessionNumber = ""
    ds.Modality = "CR" if sop_class == CR_IMAGE_STORAGE else "OT"
    if sop_class != CR_IMAGE_STORAGE:
        ds.ConversionType = "SYN"
        ds.BurnedInAnnotation = "NO"
        if photometric == "MONOCHROME2":
            ds.PresentationLUTShape = "IDENTITY"
    ds.Manufacturer = "synthgen"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "synthetic phantom (synthgen demo)"
    ds.SeriesDescription = "synthetic phantom"
    ds.ManufacturerModelName = "synthgen phantom"
    if synthetic_flag:
        ds.SyntheticData = "YES"
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = patient.sex
    ds.BodyPartExamined = body_part
    if sop_class == CR_IMAGE_STORAGE:
        ds.ViewPosition = view_position
    ds.StudyInstanceUID = uid("study", *study_key)
    ds.SeriesInstanceUID = uid("series", *series_key)
    ds.StudyID = "1"
    ds.SeriesNumber = series_number
    ds.InstanceNumber = instance_number
    ds.PatientOrientation = ["L", "F"]
    eq = Dataset()
    eq.Manufacturer = "synthgen"
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "109100", "DCM", "Synthesizing Equipment"
    eq.PurposeOfReferenceCodeSequence = [code]
    eq.ContributionDescription = "procedural phantom rendered by synthgen"
    ds.ContributingEquipmentSequence = [eq]

    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    if frames > 1:
        ds.NumberOfFrames = frames
        ds.FrameIncrementPointer = (0x0018, 0x2002)  # Frame Label Vector
        ds.FrameLabelVector = [f"F{k}" for k in range(frames)]
    ds.Rows, ds.Columns = stored.shape[-2:]
    ds.BitsAllocated = bits_alloc
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = int(signed)
    if rescale is not None:
        ds.RescaleIntercept = f"{rescale[1]:g}"
        ds.RescaleSlope = f"{rescale[0]:g}"
        ds.RescaleType = "US"
    if window is not None:
        ds.WindowCenter = f"{window[0]:g}"
        ds.WindowWidth = f"{window[1]:g}"
    ds.LossyImageCompression = "00"
    data = np.ascontiguousarray(stored.astype(dtype)).astype(np.dtype(dtype).newbyteorder("<")).tobytes()
    ds.PixelData = data + (b"\0" if len(data) % 2 else b"")
    ds["PixelData"].VR = "OB" if bits_alloc == 8 else "OW"
    return ds


def write_dicom(path: str | os.PathLike, stored: np.ndarray, **kwargs) -> Path:
    """Build (see :func:`build_dataset`) and save one DICOM file; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    build_dataset(stored, **kwargs).save_as(path, enforce_file_format=True)
    return path
