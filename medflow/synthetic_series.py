"""Synthetic CT and MR series: one file per slice under random file names (or one Enhanced
multi-frame file), fake PHI everywhere (``CANARY``), a learnable two-class 3-D signal.

CT slices are signed 16-bit with a rescale intercept and a Hounsfield window; MR slices unsigned
12-bit with their own window. Geometry is explicit: orientation, slice step, feet-first, gantry tilt
and Instance Number patterns can all be chosen, so tests can assert the assembled volume against the
written one.
"""

from __future__ import annotations

import copy
import os
import uuid
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, generate_uid

from medflow.synthetic import CANARY, CLASSES, Phi, base_dataset, to_bytes, write_labels

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
ORIENTATIONS = {  # row and column direction cosines
    "axial": (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    "axial_feet_first": (-1.0, 0.0, 0.0, 0.0, 1.0, 0.0),  # normal -z: positions go negative
    "sagittal": (0.0, 1.0, 0.0, 0.0, 0.0, -1.0),
    "coronal": (1.0, 0.0, 0.0, 0.0, 0.0, -1.0),
}
CT_WINDOW = (40.0, 400.0)  # soft tissue, Hounsfield units
MR_WINDOW = (1500.0, 3000.0)


@dataclass(frozen=True)
class SeriesGeometry:
    """Where slice k lies: ``origin + k * step * normal`` (+ ``tilt`` degrees towards the column direction)."""

    orientation: str = "axial"
    step: float = 2.5  # mm between slices
    pixel_spacing: tuple[float, float] = (0.8, 0.8)
    origin: tuple[float, float, float] = (-100.0, -100.0, -50.0)
    tilt: float = 0.0

    def cosines(self) -> np.ndarray:
        return np.array(ORIENTATIONS[self.orientation])

    def normal(self) -> np.ndarray:
        c = self.cosines()
        return np.cross(c[:3], c[3:])

    def position(self, k: int) -> np.ndarray:
        column = self.cosines()[3:]
        shift = k * self.step * np.tan(np.radians(self.tilt)) * column
        return np.array(self.origin) + k * self.step * self.normal() + shift


def lesion_volume(rng: np.random.Generator, depth: int, size: int, abnormal: bool, contrast: float = 0.35) -> np.ndarray:
    """A body-like float volume in [0, 1] that changes along every axis; ``abnormal`` adds a bright sphere."""
    zz, yy, xx = np.mgrid[0:depth, 0:size, 0:size]
    z, y, x = zz / max(depth - 1, 1), yy / size, xx / size
    body = np.exp(-(((x - 0.5) / 0.38) ** 2 + ((y - 0.5) / 0.3) ** 2) ** 2)
    volume = 0.25 + 0.45 * body * (0.8 + 0.2 * z) + rng.normal(0, 0.03, body.shape)
    if abnormal:
        c = rng.uniform(0.3, 0.7, 3)
        radius = rng.uniform(0.1, 0.16)
        volume += contrast * np.exp(-((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2) / (2 * radius**2))
    return np.clip(volume, 0, 1)


def stored_values(volume: np.ndarray, modality: str) -> np.ndarray:
    """CT: signed 16-bit stored (HU + 1024, HU from -1000 to +400); MR: unsigned 12-bit."""
    if modality == "CT":
        return (np.rint(volume * 1400 - 1000) + 1024).astype(np.int16)
    return np.rint(volume * 3000).astype(np.uint16)


def _pixel_module(ds: Dataset, stored: np.ndarray, modality: str) -> None:
    ds.Rows, ds.Columns = stored.shape[-2:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = 16
    if modality == "CT":
        ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
        ds.WindowCenter, ds.WindowWidth = CT_WINDOW
    else:
        ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, 0
        ds.WindowCenter, ds.WindowWidth = MR_WINDOW
    ds.PixelData = np.ascontiguousarray(stored).tobytes()


def _file_meta(ds: Dataset) -> None:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID


def slice_datasets(volume: np.ndarray, modality: str, phi: Phi, geometry: SeriesGeometry = SeriesGeometry(),
                   instance_numbers: str = "ascending", series_uid: str | None = None) -> list[Dataset]:
    """One dataset per slice, slice k of ``volume`` at ``geometry.position(k)``.

    ``instance_numbers``: ascending, descending, constant or absent (none of which medflow may use)."""
    series_uid, study_uid = series_uid or generate_uid(), generate_uid()
    stored = stored_values(volume, modality)
    out = []
    for k in range(len(volume)):
        ds = base_dataset(phi, sop_class=CT_IMAGE if modality == "CT" else MR_IMAGE)
        ds.Modality, ds.SeriesInstanceUID, ds.StudyInstanceUID = modality, series_uid, study_uid
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.PatientPosition = "FFS" if geometry.orientation == "axial_feet_first" else "HFS"
        ds.ImagePositionPatient = [round(float(v), 4) for v in geometry.position(k)]
        ds.ImageOrientationPatient = list(geometry.cosines())
        ds.PixelSpacing = list(geometry.pixel_spacing)
        ds.SliceThickness = geometry.step
        number = {"ascending": k + 1, "descending": len(volume) - k, "constant": 1}.get(instance_numbers)
        if number is not None:
            ds.InstanceNumber = number
        ds.AcquisitionDateTime = "20240229101010"
        _pixel_module(ds, stored[k], modality)
        _file_meta(ds)
        out.append(ds)
    return out


def localizer(like: Dataset) -> Dataset:
    """A scout image of the same patient: ImageType LOCALIZER, another orientation, another series."""
    ds = copy.deepcopy(like)
    ds.SOPInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    ds.ImageOrientationPatient = list(ORIENTATIONS["coronal"])
    _file_meta(ds)
    return ds


def structured_report(like: Dataset) -> Dataset:
    """A Basic Text SR of the same series (no pixels)."""
    ds = base_dataset(Phi(str(like.PatientID), str(like.PatientName)), sop_class=BASIC_TEXT_SR)
    ds.SeriesInstanceUID, ds.Modality = like.SeriesInstanceUID, "SR"
    ds.ContentSequence = DicomSequence([])
    _file_meta(ds)
    return ds


def enhanced_dataset(volume: np.ndarray, modality: str, phi: Phi, geometry: SeriesGeometry = SeriesGeometry(),
                     frame_order: list[int] | None = None) -> Dataset:
    """One Enhanced CT/MR file; frame i holds slice ``frame_order[i]`` (default: in order), its position
    and rescale/window in per-frame functional groups, orientation and spacing in the shared ones."""
    order = list(range(len(volume))) if frame_order is None else frame_order
    ds = base_dataset(phi, sop_class=ENHANCED_CT if modality == "CT" else ENHANCED_MR)
    ds.Modality, ds.ImageType = modality, ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    ds.NumberOfFrames = len(order)
    shared = Dataset()
    orientation, measures = Dataset(), Dataset()
    orientation.ImageOrientationPatient = list(geometry.cosines())
    measures.PixelSpacing, measures.SliceThickness = list(geometry.pixel_spacing), geometry.step
    shared.PlaneOrientationSequence, shared.PixelMeasuresSequence = DicomSequence([orientation]), DicomSequence([measures])
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    stored = stored_values(volume, modality)
    _pixel_module(ds, stored[order], modality)
    frames = []
    for k in order:
        item, position, voi = Dataset(), Dataset(), Dataset()
        position.ImagePositionPatient = [round(float(v), 4) for v in geometry.position(k)]
        voi.WindowCenter, voi.WindowWidth = ds.WindowCenter, ds.WindowWidth
        item.PlanePositionSequence, item.FrameVOILUTSequence = DicomSequence([position]), DicomSequence([voi])
        if modality == "CT":
            transform = Dataset()
            transform.RescaleIntercept, transform.RescaleSlope, transform.RescaleType = -1024, 1, "HU"
            item.PixelValueTransformationSequence = DicomSequence([transform])
        frames.append(item)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(frames)
    for keyword in ("WindowCenter", "WindowWidth", "RescaleIntercept", "RescaleSlope", "RescaleType"):
        if keyword in ds:
            delattr(ds, keyword)  # only in the functional groups, as the Enhanced IODs require
    _file_meta(ds)
    return ds


def write_files(folder: str, datasets: list[Dataset], rng: np.random.Generator, rle: bool = False) -> list[str]:
    """Write each dataset under a random file name in ``folder``; return the names in dataset order."""
    os.makedirs(folder, exist_ok=True)
    names = []
    for ds in datasets:
        if rle and "PixelData" in ds:
            ds.compress(RLELossless, encoding_plugin="pydicom")
        name = f"{uuid.UUID(int=int(rng.integers(1 << 62)) << 64 | int(rng.integers(1 << 62))).hex}.dcm"
        with open(os.path.join(folder, name), "wb") as f:
            f.write(to_bytes(ds))
        names.append(name)
    return names


def write_volume_corpus(out_dir: str, n_patients: int = 12, series_per_patient: int = 2, size: int = 24,
                        depth: int = 16, modality: str = "CT", seed: int = 0, contrast: float = 0.35,
                        labels_name: str = "labels.csv") -> str:
    """Series folders (one per series, named with PHI) of ``depth`` slices and their labels CSV; about
    40% abnormal; slice step and pixel spacing vary per series. Returns the CSV path."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        phi = Phi.for_patient(p + seed * 100000)
        for s in range(series_per_patient):
            abnormal = bool(rng.random() < 0.4)
            geometry = SeriesGeometry(step=float(rng.uniform(1.0, 2.0)),
                                      pixel_spacing=(float(rng.uniform(0.6, 1.0)),) * 2)
            datasets = slice_datasets(lesion_volume(rng, depth, size, abnormal, contrast), modality, phi, geometry)
            rel = f"{phi.patient_name.replace('^', '_')}/{CANARY}_series{s:02d}"
            write_files(os.path.join(out_dir, rel), datasets, rng)
            rows.append((rel, CLASSES[int(abnormal)]))
    csv_path = os.path.join(out_dir, labels_name)
    write_labels(csv_path, rows)
    return csv_path
