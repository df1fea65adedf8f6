"""Synthetic DICOM corpora: many patients, a learnable two-class signal, mixed encodings and
fake PHI planted everywhere a real file may carry it (used by tests, the demo and benchmarks).

Every planted identifier contains ``CANARY`` so that a scan of anything medflow writes can prove
none of it leaked.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import imagecodecs
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

CANARY = "CANARY"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
CR_IMAGE = "1.2.840.10008.5.1.4.1.1.1"
ENCODINGS = (
    "u8", "u16_window", "mono1", "rle", "j2k", "jpeg", "jpeg_lossless", "jpeg_ls",
    "implicit", "big_endian", "deflated", "raw",
)
DEFAULT_MIX = ("u8", "u16_window", "mono1", "rle", "j2k")
CLASSES = ("normal", "abnormal")


@dataclass(frozen=True)
class Phi:
    """Fake identifiers for one patient; all contain the canary marker."""

    patient_id: str
    patient_name: str
    birth_date: str = "19700101"
    institution: str = f"{CANARY} GENERAL HOSPITAL"

    @classmethod
    def for_patient(cls, index: int) -> Phi:
        return cls(patient_id=f"{CANARY}ID{index:05d}", patient_name=f"{CANARY}^PATIENT^{index:05d}")


def base_dataset(phi: Phi, sop_uid: str | None = None, sop_class: str = CR_IMAGE) -> Dataset:
    """A header with PHI in the usual places, nested sequences and private tags."""
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid or generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = phi.patient_name
    ds.PatientID = phi.patient_id
    ds.PatientBirthDate = phi.birth_date
    ds.PatientSex = "O"
    ds.StudyDate = "20240229"
    ds.StudyTime = "101010"
    ds.AccessionNumber = f"{CANARY}ACC1"
    ds.InstitutionName = phi.institution
    ds.InstitutionAddress = f"1 {CANARY} STREET"
    ds.ReferringPhysicianName = f"{CANARY}^DOCTOR"
    ds.StudyDescription = f"chest for {CANARY} follow-up"
    ds.ImageComments = f"free text about {phi.patient_name}"
    ds.Modality = "CR"
    item = Dataset()
    item.PatientName = f"{CANARY}^NESTED"
    item.OtherPatientIDs = f"{CANARY}OTHERID"
    ds.OtherPatientIDsSequence = DicomSequence([item])
    request = Dataset()
    request.RequestedProcedureID = f"{CANARY}REQ"
    request.ScheduledProcedureStepID = f"{CANARY}SPS"
    ds.RequestAttributesSequence = DicomSequence([request])
    block = ds.private_block(0x0011, f"{CANARY} PRIVATE", create=True)
    block.add_new(0x01, "LO", f"{CANARY}PRIVATEVALUE")
    return ds


def set_monochrome(ds: Dataset, stored: np.ndarray, bits_stored: int, photometric: str = "MONOCHROME2") -> None:
    """Image pixel module for a 2-D unsigned array of stored values."""
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 8 if stored.dtype == np.uint8 else 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    ds.PixelData = stored.tobytes()


def encode_image(image: np.ndarray, encoding: str, phi: Phi, sop_uid: str | None = None) -> Dataset:
    """A dataset holding ``image`` (float in [0, 1], 2-D) stored with the named encoding."""
    ds = base_dataset(phi, sop_uid)
    syntax = ExplicitVRLittleEndian
    if encoding in ("u8", "jpeg", "implicit", "big_endian", "deflated", "raw"):
        set_monochrome(ds, np.rint(image * 255).astype(np.uint8), 8)
    elif encoding in ("u16_window", "rle", "j2k", "jpeg_lossless", "jpeg_ls"):
        stored = np.rint(image * 4000).astype(np.uint16)  # 12 bits stored
        set_monochrome(ds, stored, 12)
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1000
        ds.WindowCenter, ds.WindowWidth = [1000, 40], [4000, 400]  # first window is the one used
    elif encoding == "mono1":
        set_monochrome(ds, np.rint((1 - image) * 255).astype(np.uint8), 8, "MONOCHROME1")
    else:
        raise ValueError(f"unknown encoding {encoding!r}; expected one of {ENCODINGS}")
    if encoding == "implicit":
        syntax = ImplicitVRLittleEndian
    elif encoding == "big_endian":
        syntax = ExplicitVRBigEndian
    elif encoding == "deflated":
        syntax = DeflatedExplicitVRLittleEndian
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if encoding == "rle":
        ds.compress(RLELossless, encoding_plugin="pydicom")
    elif encoding == "j2k":
        ds.compress(JPEG2000Lossless)
    elif encoding == "jpeg":
        ok, jpeg = cv2.imencode(".jpg", np.frombuffer(ds.PixelData, np.uint8).reshape(ds.Rows, ds.Columns),
                                [cv2.IMWRITE_JPEG_QUALITY, 95])
        assert ok
        ds.PixelData = encapsulate([jpeg.tobytes()])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        ds.LossyImageCompression = "01"
    elif encoding in ("jpeg_lossless", "jpeg_ls"):
        stored = np.frombuffer(ds.PixelData, np.uint16).reshape(ds.Rows, ds.Columns)
        if encoding == "jpeg_ls":
            frame, ds.file_meta.TransferSyntaxUID = imagecodecs.jpegls_encode(stored), JPEGLSLossless
        else:
            frame = imagecodecs.jpeg8_encode(stored, lossless=True, bitspersample=12, predictor=1)
            ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
        ds.PixelData = encapsulate([bytes(frame)])
        ds["PixelData"].VR = "OB"
    return ds


def to_bytes(ds: Dataset, raw: bool = False) -> bytes:
    """Serialise: Part 10 with preamble and file meta, or (``raw``) a bare implicit-VR dataset."""
    from io import BytesIO

    buffer = BytesIO()
    if raw:
        ds = ds.copy()
        del ds.file_meta
        pydicom.dcmwrite(buffer, ds, implicit_vr=True, little_endian=True, enforce_file_format=False)
    else:
        syntax = ds.file_meta.TransferSyntaxUID
        pydicom.dcmwrite(buffer, ds, enforce_file_format=True,
                         little_endian=syntax != ExplicitVRBigEndian,
                         implicit_vr=syntax == ImplicitVRLittleEndian)
    return buffer.getvalue()


def lesion_image(rng: np.random.Generator, size: int, abnormal: bool, contrast: float = 0.35) -> np.ndarray:
    """A chest-like float image in [0, 1]; ``abnormal`` adds a bright round opacity of ``contrast``."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    image = 0.35 + 0.25 * np.exp(-((xx - 0.3) ** 2 + (yy - 0.5) ** 2) / 0.05)
    image += 0.25 * np.exp(-((xx - 0.7) ** 2 + (yy - 0.5) ** 2) / 0.05)
    image += rng.normal(0, 0.05, (size, size))
    if abnormal:
        cy, cx = rng.uniform(0.3, 0.7, 2)
        radius = rng.uniform(0.06, 0.12)
        image += contrast * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * radius**2))
    return np.clip(image, 0, 1)


def write_corpus(
    out_dir: str,
    n_patients: int = 20,
    images_per_patient: int = 3,
    size: int = 64,
    encodings: Sequence[str] = DEFAULT_MIX,
    seed: int = 0,
    labels_name: str = "labels.csv",
    contrast: float = 0.35,
) -> str:
    """Write a corpus (one folder per patient, named with PHI) and its labels CSV; return the CSV path.

    Each image's label is drawn per image (about 40% abnormal); encodings rotate through ``encodings``;
    ``contrast`` sets how visible the abnormal opacity is (lower is harder).
    """
    rng = np.random.default_rng(seed)
    rows: list[tuple[str, str]] = []
    counter = 0
    for p in range(n_patients):
        phi = Phi.for_patient(p + seed * 100000)
        folder = f"{phi.patient_name.replace('^', '_')}_{phi.birth_date}"
        os.makedirs(os.path.join(out_dir, folder), exist_ok=True)
        for i in range(images_per_patient):
            abnormal = bool(rng.random() < 0.4)
            encoding = encodings[counter % len(encodings)]
            counter += 1
            ds = encode_image(lesion_image(rng, size, abnormal, contrast), encoding, phi)
            rel = f"{folder}/{CANARY}_img{i:03d}.dcm"
            with open(os.path.join(out_dir, rel), "wb") as f:
                f.write(to_bytes(ds, raw=encoding == "raw"))
            rows.append((rel, CLASSES[int(abnormal)]))
    csv_path = os.path.join(out_dir, labels_name)
    write_labels(csv_path, rows)
    return csv_path


def write_labels(csv_path: str, rows: Sequence[Sequence[str]], header: Sequence[str] = ("path", "label")) -> None:
    with open(csv_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
