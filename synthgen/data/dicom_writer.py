"""The one DICOM writer: grayscale CR/SC images from stored pixel values (the demo cohort, DICOM test inputs)
and the export's synthetic Secondary Capture samples (:func:`sample_dataset`).

Headers are built from an allow-list of attributes (never by editing a real header), carry no real identity
(the fake patient passed in, or a fixed ``SYNTHETIC`` one), are marked as synthetic (ImageType DERIVED, a
Contributing Equipment item "Synthesizing Equipment", Synthetic Data = YES where asked), and use UIDs derived
deterministically from non-PHI strings (``generate_uid(entropy_srcs=...)``) and fixed dates or none, so the
bytes are identical on every run. Transfer syntax: explicit VR little endian.

highdicom (0.28) was tried for the Secondary Capture objects and not adopted: its ``SCImage`` writes the
current date and time (Instance Creation, Content, Date/Time of Secondary Capture, a second Contributing
Equipment item with a Contribution DateTime), hard-codes Conversion Type ``DI`` and requires a patient
orientation, so neither the "no dates, deterministic bytes" rule nor ``dciodvfy`` (missing Laterality) held
without editing its output afterwards.
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
#: Purpose of Reference code of the Contributing Equipment item every file carries.
SYNTHESIZING_EQUIPMENT = ("109100", "DCM", "Synthesizing Equipment")

#: every attribute an exported sample may hold (:func:`sample_dataset` writes exactly these).
ALLOWED_KEYWORDS = frozenset("""
SpecificCharacterSet ImageType SOPClassUID SOPInstanceUID StudyDate StudyTime AccessionNumber Modality
ConversionType ReferringPhysicianName Manufacturer SeriesDescription SyntheticData PatientName PatientID
PatientBirthDate PatientSex StudyInstanceUID SeriesInstanceUID StudyID SeriesNumber InstanceNumber
PatientOrientation Laterality BurnedInAnnotation SamplesPerPixel PhotometricInterpretation PlanarConfiguration
Rows Columns BitsAllocated BitsStored HighBit PixelRepresentation PixelData ContributingEquipmentSequence
PurposeOfReferenceCodeSequence CodeValue CodingSchemeDesignator CodeMeaning ManufacturerModelName
SoftwareVersions ContributionDescription LossyImageCompression ImageComments
""".split())


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


def _new_dataset(sop_class: str, sop_uid: str):
    """An empty dataset with its file meta (explicit VR little endian) and the SOP attributes."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID

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
    return ds


def _synthesizing_equipment(description: str, model_name: str | None = None, software: str | None = None):
    """The Contributing Equipment Sequence (one "Synthesizing Equipment" item by ``synthgen``)."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DicomSequence

    item = Dataset()
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = SYNTHESIZING_EQUIPMENT
    item.PurposeOfReferenceCodeSequence = DicomSequence([code])
    item.Manufacturer = "synthgen"
    if model_name is not None:
        item.ManufacturerModelName = model_name[:64]
    if software is not None:
        item.SoftwareVersions = software[:64]
    item.ContributionDescription = description
    return DicomSequence([item])


def _set_pixels(ds, pixels: np.ndarray, bits_allocated: int) -> None:
    """``PixelData`` from ``pixels`` (frames/rows/columns[/samples] in file order), little endian, even length."""
    data = np.ascontiguousarray(pixels).astype(pixels.dtype.newbyteorder("<")).tobytes()
    ds.PixelData = data + (b"\0" if len(data) % 2 else b"")
    ds["PixelData"].VR = "OB" if bits_allocated == 8 else "OW"


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
        a ``pydicom.Dataset`` with file meta, ready for :func:`save`.
    """
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

    ds = _new_dataset(sop_class, sop_uid)
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
    ds.ContributingEquipmentSequence = _synthesizing_equipment("procedural phantom rendered by synthgen")

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
    _set_pixels(ds, stored.astype(dtype), bits_alloc)
    return ds


def sample_dataset(image: np.ndarray, key: str, class_name: str, instance: int, *, name: str,
                   config_hash: str, generator: str, version: str):
    """An exported synthetic sample as a Secondary Capture dataset (with file meta).

    Args:
        image: ``(C, H, W)`` uint8|uint16, ``C`` in {1, 3}: the stored intensities, written unchanged
            (8 or 16 bits unsigned; 1 channel MONOCHROME2, 3 channels RGB interleaved). Anything else raises
            ``ValueError``.
        key, class_name, instance: the sample's export key, class and Instance Number.
        name, config_hash: the export's name and the generator run's config hash. UIDs come only from them
            and the key: study one per export, series one per class, SOP instance one per key.
        generator, version: written into the Contributing Equipment item (model name, software version).

    Synthetic Data = YES; Image Type DERIVED\\SECONDARY; Conversion Type SYN; Patient's Name
    ``SYNTHETIC^SAMPLE``, Patient ID ``SYNTHETIC``, the other type-2 attributes empty; no dates or times, so
    the bytes depend only on the sample and the config. Only :data:`ALLOWED_KEYWORDS` occur.
    """
    from pydicom.uid import SecondaryCaptureImageStorage

    c, h, w = image.shape
    if image.dtype not in (np.uint8, np.uint16) or c not in (1, 3):
        raise ValueError(f"DICOM export needs 1 or 3 channels of uint8|uint16, got {image.shape} {image.dtype}")
    bits = 8 * image.dtype.itemsize
    ds = _new_dataset(SecondaryCaptureImageStorage, uid(config_hash, name, "instance", key))
    ds.StudyDate = ""
    ds.StudyTime = ""
    ds.AccessionNumber = ""
    ds.Modality = "OT"
    ds.ConversionType = "SYN"
    ds.ReferringPhysicianName = ""
    ds.Manufacturer = "synthgen"
    ds.SeriesDescription = f"synthetic {class_name}"[:64]
    ds.SyntheticData = "YES"
    ds.PatientName = "SYNTHETIC^SAMPLE"
    ds.PatientID = "SYNTHETIC"
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyInstanceUID = uid(config_hash, name, "study")
    ds.SeriesInstanceUID = uid(config_hash, name, "series", class_name)
    ds.StudyID = ""
    ds.SeriesNumber = 1
    ds.Laterality = ""
    ds.InstanceNumber = int(instance)
    ds.PatientOrientation = ""
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.ImageComments = f"synthetic image, class {class_name}; not for diagnosis"[:10240]
    ds.ContributingEquipmentSequence = _synthesizing_equipment(
        "synthetic image generated by synthgen", model_name=generator or "unknown generator",
        software=f"synthgen {version}")

    ds.SamplesPerPixel = c
    ds.PhotometricInterpretation = "MONOCHROME2" if c == 1 else "RGB"
    if c == 3:
        ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = h, w
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    _set_pixels(ds, image[0] if c == 1 else image.transpose(1, 2, 0), bits)
    return ds


def save(path: str | os.PathLike, ds) -> Path:
    """Write ``ds`` as a DICOM Part 10 file (preamble, file meta; deterministic bytes); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_dicom(path: str | os.PathLike, stored: np.ndarray, **kwargs) -> Path:
    """Build (see :func:`build_dataset`) and save one DICOM file; returns the path."""
    return save(path, build_dataset(stored, **kwargs))


def read_pixels(path: str | os.PathLike) -> np.ndarray:
    """Read a file of :func:`sample_dataset` back to ``(C, H, W)`` in its stored dtype."""
    import pydicom

    ds = pydicom.dcmread(path)
    a = ds.pixel_array
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
