"""Why an input gets no dataset row or no prediction: one enumeration, shared by ingestion (the
rejects CSV) and prediction (the predictions CSV's ``reason`` column). The values are stable codes."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Reason(StrEnum):
    """A stable refusal code; ``description`` says what it means. Add a reason here, nowhere else."""

    NOT_DICOM = "not_dicom"
    TRUNCATED = "truncated"
    NO_PIXEL_DATA = "no_pixel_data"
    PIXEL_DATA_SIZE_MISMATCH = "pixel_data_size_mismatch"
    NO_DECODER = "no_decoder"
    NOT_AN_IMAGE = "not_an_image"
    MULTI_FRAME = "multi_frame"
    COLOUR = "colour"
    TOO_LARGE = "too_large"
    INVALID_HEADER = "invalid_header"
    DECODE_FAILED = "decode_failed"
    READ_ERROR = "read_error"
    DUPLICATE_SOP_INSTANCE_UID = "duplicate_sop_instance_uid"
    EXACT_DUPLICATE = "exact_duplicate"
    PATH_OUTSIDE_SOURCE = "path_outside_source"
    MISSING_FILE = "missing_file"
    UNLABELED = "unlabeled"
    INVALID_LABEL_ROW = "invalid_label_row"
    CONFLICTING_LABELS = "conflicting_labels"
    INTERNAL_ERROR = "internal_error"
    # series (volume datasets): the series folder or multi-frame file is refused as a whole
    NOT_A_SERIES = "not_a_series"
    SEVERAL_SERIES = "several_series"
    TOO_FEW_SLICES = "too_few_slices"
    NO_POSITION = "no_position"
    MISSING_SLICE = "missing_slice"
    DUPLICATE_POSITION = "duplicate_position"
    MIXED_GEOMETRY = "mixed_geometry"
    SEVERAL_PATIENTS = "several_patients"
    GANTRY_TILT = "gantry_tilt"

    @property
    def description(self) -> str:
        return DESCRIPTIONS[self]


DESCRIPTIONS: dict[Reason, str] = {
    Reason.NOT_DICOM: "not a DICOM file",
    Reason.TRUNCATED: "file ends before its declared content",
    Reason.NO_PIXEL_DATA: "no (7FE0,0010) Pixel Data",
    Reason.PIXEL_DATA_SIZE_MISMATCH: "Pixel Data length differs from Rows x Columns x bits",
    Reason.NO_DECODER: "no installed decoder for the transfer syntax",
    Reason.NOT_AN_IMAGE: "not an image object (SR, RT plan, waveform, DICOMDIR, ...)",
    Reason.MULTI_FRAME: "more than one frame",
    Reason.COLOUR: "colour or palette image (only monochrome is ingested)",
    Reason.TOO_LARGE: "declared size over the configured limit",
    Reason.INVALID_HEADER: "image attributes missing or out of range",
    Reason.DECODE_FAILED: "pixel data could not be decoded",
    Reason.READ_ERROR: "the file could not be read",
    Reason.DUPLICATE_SOP_INSTANCE_UID: "same SOP Instance UID as another image with different pixels",
    Reason.EXACT_DUPLICATE: "byte-identical to another input",
    Reason.PATH_OUTSIDE_SOURCE: "labels path is absolute, contains '..' or leaves the source",
    Reason.MISSING_FILE: "labels path does not exist in the source",
    Reason.UNLABELED: "file in the source with no row in the labels CSV",
    Reason.INVALID_LABEL_ROW: "labels row with an empty label or an unknown split",
    Reason.CONFLICTING_LABELS: "the same path is listed more than once with different labels or splits",
    Reason.INTERNAL_ERROR: "unexpected error while processing this file",
    Reason.NOT_A_SERIES: "no image slice of a volume in the series folder or file",
    Reason.SEVERAL_SERIES: "the folder holds slices of more than one Series Instance UID",
    Reason.TOO_FEW_SLICES: "fewer than 2 slices in the series",
    Reason.NO_POSITION: "a slice or frame without Image Position or Image Orientation (Patient)",
    Reason.MISSING_SLICE: "a gap in the slice positions (a slice is missing)",
    Reason.DUPLICATE_POSITION: "two slices at one position",
    Reason.MIXED_GEOMETRY: "slices differ in Rows/Columns or Pixel Spacing",
    Reason.SEVERAL_PATIENTS: "slices of more than one patient",
    Reason.GANTRY_TILT: "slices are not stacked along their normal (gantry tilt); not resampled",
}


SERIES_REASONS = frozenset({Reason.NOT_A_SERIES, Reason.SEVERAL_SERIES, Reason.TOO_FEW_SLICES, Reason.NO_POSITION,
                            Reason.MISSING_SLICE, Reason.DUPLICATE_POSITION, Reason.MIXED_GEOMETRY,
                            Reason.SEVERAL_PATIENTS, Reason.GANTRY_TILT})  # refuse a whole series, never a file


class Rejection(Exception):
    """An input that is refused, with its ``reason`` and a human ``detail`` (which never quotes PHI)."""

    def __init__(self, reason: Reason | str, detail: str = "") -> None:
        self.reason = Reason(reason)
        self.detail = detail or self.reason.description
        super().__init__(f"{self.reason}: {self.detail}")


@dataclass(frozen=True)
class RefusedPath:
    """An input refused before decoding (a labels row or a listed file), by its path below the source."""

    path: str
    reason: Reason
    detail: str


@dataclass(frozen=True)
class RefusedItem:
    """A planned input refused while decoding or reconciling, by its item index in the run."""

    index: int
    reason: Reason
    detail: str
