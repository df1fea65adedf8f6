"""A series' files (or one Enhanced multi-frame file) -> its slices in order along their normal, or a
series-level refusal naming why.

Slices are grouped by Series Instance UID after dropping what is not part of the volume (non-image
objects such as SR; localizers: ImageType LOCALIZER, or an orientation other than the stack's), and
sorted by Image Position (Patient) projected on the normal of Image Orientation (Patient), never by
Instance Number or file name. Every check reads headers only: no pixel is decoded here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from pydicom.dataset import Dataset

from tasks.core.refusals import Rejection
from tasks.dicom.header import ImageHeader, Limits, is_non_image_object, parse, validate

DUPLICATE_MM = 0.01  # two slices closer than this along the normal are at one position
GAP_RATIO = 1.5  # a step this much longer than the median step is a missing slice
IRREGULAR = 0.1  # steps may differ from the median by this fraction
TILT_DEGREES = 0.5  # slices displaced off their normal by more than this are a tilted stack
ORIENTATION_TOLERANCE = 1e-3  # direction cosines that differ by less are one orientation


@dataclass
class Plane:
    """One slice: where it lies, and how to get its stored values and display attributes."""

    position: np.ndarray  # Image Position (Patient), mm
    orientation: np.ndarray  # Image Orientation (Patient): row then column direction cosines
    spacing: tuple[float, float]  # Pixel Spacing: between rows, between columns (mm)
    header: ImageHeader
    display: Dataset  # what the modality and VOI LUTs read (rescale, window, bits, photometric)
    stored: Callable[[], np.ndarray]  # rows x columns stored values, decoded on demand


@dataclass
class Series:
    """A series' slices in ascending order along the normal, and what was dropped on the way."""

    planes: list[Plane]
    step: float  # mm between consecutive slices
    dropped: Counter = field(default_factory=Counter)  # "localizer", "non_image" -> count
    series_uid: str = ""
    patient_id: str = ""
    modality: str = ""

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel spacing (slice, row, column) in mm."""
        return (self.step, *self.planes[0].spacing)


def _floats(value: object, n: int) -> np.ndarray | None:
    try:
        values = np.array([float(v) for v in value], dtype=np.float64)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None
    return values if values.shape == (n,) and np.isfinite(values).all() else None


def _is_non_image(ds: Dataset) -> bool:
    return is_non_image_object(ds) or "PixelData" not in ds


def _is_localizer(ds: Dataset) -> bool:
    image_type = ds.get("ImageType") or []
    values = [image_type] if isinstance(image_type, str) else list(image_type)
    return any(str(v).strip().upper() == "LOCALIZER" for v in values)


def _pixel_spacing(value: object) -> tuple[float, float]:
    spacing = _floats(value, 2)
    if spacing is None or (spacing <= 0).any():
        raise Rejection("invalid_header", "(0028,0030) Pixel Spacing missing or not two positive numbers")
    return float(spacing[0]), float(spacing[1])


def _plane_of_file(ds: Dataset, limits: Limits) -> Plane:
    from tasks.dicom.decode import stored_pixels  # decode imports this module's neighbours, not this one

    header = validate(ds, limits)  # every 2-D rule: the series gets a refused slice's reason
    position, orientation = _floats(ds.get("ImagePositionPatient"), 3), _floats(ds.get("ImageOrientationPatient"), 6)
    if position is None or orientation is None:
        raise Rejection("no_position", "a slice lacks (0020,0032) Image Position or (0020,0037) Image Orientation (Patient)")
    return Plane(position, orientation, _pixel_spacing(ds.get("PixelSpacing")), header, ds,
                 lambda: stored_pixels(ds, header))


def _group_value(item: Dataset, shared: Dataset, sequence: str, keyword: str) -> object:
    """A functional group's attribute for one frame: its own group first, then the shared one."""
    for groups in (item, shared):
        seq = groups.get(sequence)
        if seq and keyword in seq[0]:
            return seq[0].get(keyword)
    return None


def _frame_display(ds: Dataset, item: Dataset, shared: Dataset) -> Dataset:
    """The attributes the display LUTs read, for one frame of an Enhanced multi-frame image."""
    display = Dataset()
    for keyword in ("BitsAllocated", "BitsStored", "PixelRepresentation", "PhotometricInterpretation"):
        if keyword in ds:
            setattr(display, keyword, ds.get(keyword))
    for sequence, keywords in (("PixelValueTransformationSequence", ("RescaleSlope", "RescaleIntercept")),
                               ("FrameVOILUTSequence", ("WindowCenter", "WindowWidth", "VOILUTFunction"))):
        for keyword in keywords:
            value = _group_value(item, shared, sequence, keyword) or ds.get(keyword)
            if value is not None:
                setattr(display, keyword, value)
    return display


def _planes_of_frames(ds: Dataset, limits: Limits) -> list[Plane]:
    """Each frame of an Enhanced multi-frame file, from its per-frame (or shared) functional groups."""
    from tasks.dicom.decode import stored_frames

    header = validate(ds, limits, frames=True)
    shared = (ds.get("SharedFunctionalGroupsSequence") or [Dataset()])[0]
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    if len(per_frame) != header.frames:
        raise Rejection("no_position", f"(5200,9230) Per-frame Functional Groups has {len(per_frame)} items "
                                       f"for {header.frames} frames")
    frames: list[np.ndarray] = []

    def frame(i: int) -> Callable[[], np.ndarray]:
        def stored() -> np.ndarray:
            if not frames:
                frames.extend(stored_frames(ds, header))
            return frames[i]
        return stored

    planes = []
    for i, item in enumerate(per_frame):
        position = _floats(_group_value(item, shared, "PlanePositionSequence", "ImagePositionPatient"), 3)
        orientation = _floats(_group_value(item, shared, "PlaneOrientationSequence", "ImageOrientationPatient"), 6)
        if position is None or orientation is None:
            raise Rejection("no_position", "a frame lacks Plane Position or Plane Orientation (Sequence)")
        spacing = _pixel_spacing(_group_value(item, shared, "PixelMeasuresSequence", "PixelSpacing"))
        planes.append(Plane(position, orientation, spacing, header, _frame_display(ds, item, shared), frame(i)))
    return planes


def _keep_stack(planes: list[Plane], dropped: Counter) -> list[Plane]:
    """The planes of the most common orientation; the others are localizers and are dropped."""
    keys = [tuple(np.round(p.orientation / ORIENTATION_TOLERANCE).astype(int)) for p in planes]
    stack = Counter(keys).most_common(1)[0][0]
    kept = [p for p, k in zip(planes, keys, strict=True) if k == stack]
    if len(kept) < len(planes):
        dropped["localizer"] += len(planes) - len(kept)
    return kept


def _check_geometry(planes: list[Plane], limits: Limits) -> None:
    if len(planes) < 2:
        raise Rejection("too_few_slices", f"{len(planes)} slice(s) in the series")
    shapes = {(p.header.rows, p.header.columns) for p in planes}
    spacings = {tuple(np.round(p.spacing, 4)) for p in planes}
    if len(shapes) > 1 or len(spacings) > 1:
        raise Rejection("mixed_geometry", f"{len(shapes)} Rows x Columns and {len(spacings)} Pixel Spacing values "
                                          "in one series")
    rows, columns = shapes.pop()
    declared = len(planes) * rows * columns * max(planes[0].header.bits_allocated // 8, 1)
    if len(planes) > limits.max_slices or declared > limits.max_volume_bytes:
        raise Rejection("too_large", f"{len(planes)} slices of {rows}x{columns}: over the series limits "
                                     f"({limits.max_slices} slices, {limits.max_volume_bytes} bytes)")


def _order(planes: list[Plane]) -> tuple[list[Plane], float]:
    """Planes sorted along their normal, and the step between them; refuses duplicates, gaps, tilt."""
    row, column = planes[0].orientation[:3], planes[0].orientation[3:]
    normal = np.cross(row, column)
    normal /= np.linalg.norm(normal)
    along = np.array([p.position @ normal for p in planes])
    order = np.argsort(along, kind="stable")
    planes, along = [planes[i] for i in order], along[order]
    steps = np.diff(along)
    if (steps < DUPLICATE_MM).any():
        raise Rejection("duplicate_position", f"{int((steps < DUPLICATE_MM).sum())} slice(s) at the position of another")
    median = float(np.median(steps))
    if (steps > GAP_RATIO * median).any():
        raise Rejection("missing_slice", f"a step of {steps.max():.3g} mm where the series steps {median:.3g} mm")
    if (np.abs(steps - median) > IRREGULAR * median).any():
        raise Rejection("missing_slice", f"irregular slice steps, {steps.min():.3g} to {steps.max():.3g} mm")
    offsets = np.diff(np.array([p.position for p in planes]), axis=0)
    off_normal = np.linalg.norm(offsets - np.outer(offsets @ normal, normal), axis=1)
    if (off_normal > np.tan(np.radians(TILT_DEGREES)) * steps + DUPLICATE_MM).any():
        degrees = float(np.degrees(np.arctan2(off_normal.max(), median)))
        raise Rejection("gantry_tilt", f"slices are displaced {degrees:.2g} degrees off their normal")
    return planes, float(steps.mean())


def assemble(files: list[bytes], limits: Limits = Limits()) -> Series:
    """The volume's slices from a series folder's files (or one multi-frame file); raises ``Rejection``."""
    if len(files) > limits.max_slices:
        raise Rejection("too_large", f"{len(files)} files in the series, limit {limits.max_slices}")
    dropped: Counter = Counter()
    kept: list[Dataset] = []
    for data in files:
        ds = parse(data)  # not DICOM, truncated: the whole series is refused with that reason
        if _is_non_image(ds):
            dropped["non_image"] += 1
        elif _is_localizer(ds):
            dropped["localizer"] += 1
        else:
            kept.append(ds)
    if not kept:
        raise Rejection("not_a_series", f"no image slice among {len(files)} file(s)")
    uids = {str(ds.get("SeriesInstanceUID", "") or "") for ds in kept}
    if len(uids) > 1:
        raise Rejection("several_series", f"{len(uids)} Series Instance UIDs in one folder")
    patients = {str(ds.get("PatientID", "") or "") for ds in kept}
    if len(patients) > 1:
        raise Rejection("several_patients", f"slices of {len(patients)} Patient IDs")
    multi = [ds for ds in kept if int(ds.get("NumberOfFrames", 1) or 1) > 1]
    if multi and len(kept) > 1:
        raise Rejection("multi_frame", "a multi-frame file beside other slices; name the multi-frame file itself")
    planes = _planes_of_frames(kept[0], limits) if multi else [_plane_of_file(ds, limits) for ds in kept]
    planes = _keep_stack(planes, dropped)
    _check_geometry(planes, limits)
    planes, step = _order(planes)
    first = kept[0]
    return Series(planes, step, dropped, uids.pop(), patients.pop(), str(first.get("Modality", "") or ""))
