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
}


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
