"""Read, validate and decode one DICOM file to the 8-bit display image a radiologist would see.

Pure functions over bytes and pydicom datasets; every refusal is a :class:`Rejection` with a
stable reason code (see ``REASONS``) and a message naming the DICOM tag involved.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np
import pydicom
import pydicom.config
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.pixels.decoders.base import get_decoder

# pydicom's value-validation warnings may quote header values (names, IDs) into logs, and cost time;
# the checks that matter are made below, and their messages name tags only.
pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE

# Stable reason codes written to the rejects CSV.
REASONS: dict[str, str] = {
    "not_dicom": "not a DICOM file",
    "truncated": "file ends before its declared content",
    "no_pixel_data": "no (7FE0,0010) Pixel Data",
    "pixel_data_size_mismatch": "Pixel Data length differs from Rows x Columns x bits",
    "no_decoder": "no installed decoder for the transfer syntax",
    "not_an_image": "not an image object (SR, RT plan, waveform, DICOMDIR, ...)",
    "multi_frame": "more than one frame",
    "colour": "colour or palette image (only monochrome is ingested)",
    "too_large": "declared size over the configured limit",
    "invalid_header": "image attributes missing or out of range",
    "decode_failed": "pixel data could not be decoded",
    "read_error": "the file could not be read",
    "duplicate_sop_instance_uid": "same SOP Instance UID as another image with different pixels",
    "exact_duplicate": "byte-identical to another input",
    "path_outside_source": "labels path is absolute, contains '..' or leaves the source",
    "missing_file": "labels path does not exist in the source",
    "unlabeled": "file in the source with no row in the labels CSV",
    "invalid_label_row": "labels row with an empty label or an unknown split",
    "conflicting_labels": "the same path is listed more than once with different labels or splits",
    "internal_error": "unexpected error while processing this file",
}

NON_IMAGE_SOP_PREFIXES = (
    "1.2.840.10008.5.1.4.1.1.88.",  # structured reports
    "1.2.840.10008.5.1.4.1.1.9.",  # waveforms
    "1.2.840.10008.5.1.4.1.1.481.5",  # RT plan
    "1.2.840.10008.5.1.4.1.1.481.3",  # RT structure set
    "1.2.840.10008.5.1.4.1.1.104.",  # encapsulated PDF/CDA
    "1.2.840.10008.5.1.4.1.1.11.",  # presentation states
    "1.2.840.10008.5.1.4.1.1.66",  # raw data, registration, segmentation
    "1.2.840.10008.1.3.10",  # media storage directory (DICOMDIR)
)
_NATIVE_SYNTAXES = frozenset(
    {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"}
)


class Rejection(Exception):
    """An input that is refused, with a stable ``reason`` code and a human ``detail``."""

    def __init__(self, reason: str, detail: str = "") -> None:
        assert reason in REASONS, reason
        super().__init__(f"{reason}: {detail or REASONS[reason]}")
        self.reason = reason
        self.detail = detail or REASONS[reason]


@dataclass(frozen=True)
class Limits:
    """Refusal thresholds checked before anything large is allocated."""

    max_file_bytes: int = 1 << 30  # files larger than this are not read at all
    max_pixels: int = 1 << 26  # Rows x Columns (64 Mpx)
    max_decoded_bytes: int = 1 << 28  # declared decoded size, all frames and samples


def looks_like_dicom(data: bytes) -> bool:
    """True for a Part 10 preamble ('DICM' at 128) or a raw dataset starting in group 0002/0008."""
    if len(data) >= 132 and data[128:132] == b"DICM":
        return True
    if len(data) < 8:
        return False
    group_le, _ = struct.unpack("<HH", data[:4])
    group_be, _ = struct.unpack(">HH", data[:4])
    return group_le in (0x0002, 0x0008) or group_be in (0x0002, 0x0008)


def parse(data: bytes) -> Dataset:
    """Parse bytes into a dataset, with or without preamble and file meta."""
    if not looks_like_dicom(data):
        raise Rejection("not_dicom", "no 'DICM' prefix and no group 0002/0008 element at the start")
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except (EOFError, struct.error) as exc:
        raise Rejection("truncated", f"header ends early ({type(exc).__name__})") from None
    except InvalidDicomError:
        raise Rejection("not_dicom") from None
    except Exception as exc:
        if "end of file" in str(exc).lower() or "bytes" in str(exc).lower():
            raise Rejection("truncated", f"header could not be read to the end ({type(exc).__name__})") from None
        raise Rejection("not_dicom", f"unreadable header ({type(exc).__name__})") from None
    if is_truncated(ds, data):
        raise Rejection("truncated", "the file ends inside an element")
    if not getattr(ds, "file_meta", None) or "TransferSyntaxUID" not in ds.file_meta:
        ds.file_meta = ds.file_meta or pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    return ds


_PIXEL_DATA_TAG_BYTES = (b"\xe0\x7f\x10\x00", b"\x7f\xe0\x00\x10")
_UNDEFINED_LENGTH = 0xFFFFFFFF


def is_truncated(ds: Dataset, data: bytes) -> bool:
    """pydicom reads a cut file without complaint; these are the traces a cut leaves."""
    if len(ds) == 0:
        return True
    last = ds.get_item(max(ds.keys()))
    length = getattr(last, "length", _UNDEFINED_LENGTH)
    if length != _UNDEFINED_LENGTH and last.value is not None and len(last.value) < length:
        return True
    return "PixelData" not in ds and any(tag in data for tag in _PIXEL_DATA_TAG_BYTES)


def transfer_syntax(ds: Dataset) -> str:
    return str(ds.file_meta.TransferSyntaxUID)


@dataclass(frozen=True)
class ImageHeader:
    """The image attributes, each read from the dataset once (pydicom attribute access is slow)."""

    rows: int
    columns: int
    bits_allocated: int
    bits_stored: int
    signed: bool
    samples: int
    frames: int
    photometric: str
    syntax: str

    @classmethod
    def of(cls, ds: Dataset) -> ImageHeader:
        rows, columns, bits = ds.get("Rows"), ds.get("Columns"), ds.get("BitsAllocated")
        for value, keyword, tag in ((rows, "Rows", "(0028,0010)"), (columns, "Columns", "(0028,0011)"),
                                    (bits, "BitsAllocated", "(0028,0100)")):
            if not isinstance(value, int) or value <= 0:
                raise Rejection("invalid_header", f"{tag} {keyword} must be a positive integer")
        bits_stored = ds.get("BitsStored", bits)
        if bits not in (1, 8, 16, 32) or not isinstance(bits_stored, int) or not 1 <= bits_stored <= bits:
            raise Rejection("invalid_header", "(0028,0101) Bits Stored must be 1..(0028,0100) Bits Allocated of 8/16/32")
        return cls(
            rows=int(rows), columns=int(columns), bits_allocated=int(bits), bits_stored=int(bits_stored),
            signed=int(ds.get("PixelRepresentation", 0) or 0) == 1,
            samples=int(ds.get("SamplesPerPixel", 1) or 1), frames=int(ds.get("NumberOfFrames", 1) or 1),
            photometric=str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper(),
            syntax=transfer_syntax(ds),
        )


def validate(ds: Dataset, limits: Limits) -> ImageHeader:
    """Refuse what cannot or must not be decoded, before any pixel is allocated."""
    sop_class = str(ds.get("SOPClassUID", "") or ds.file_meta.get("MediaStorageSOPClassUID", ""))
    if "DirectoryRecordSequence" in ds or sop_class.startswith(NON_IMAGE_SOP_PREFIXES):
        raise Rejection("not_an_image", f"(0008,0016) SOP Class UID {sop_class} is not an image")
    if "PixelData" not in ds:
        raise Rejection("no_pixel_data")
    h = ImageHeader.of(ds)
    declared = h.rows * h.columns * h.samples * h.frames * max(h.bits_allocated // 8, 1)
    if h.rows * h.columns > limits.max_pixels or declared > limits.max_decoded_bytes:
        raise Rejection("too_large", f"(0028,0010)x(0028,0011) {h.rows}x{h.columns}x{h.frames} frames over the limit")
    if h.frames > 1:
        raise Rejection("multi_frame", f"(0028,0008) Number of Frames is {h.frames}, expected 1")
    if h.samples != 1 or not h.photometric.startswith("MONOCHROME"):
        raise Rejection("colour", f"(0028,0004) Photometric Interpretation {h.photometric} is not MONOCHROME1/2")
    if h.syntax in _NATIVE_SYNTAXES:
        expected = (h.rows * h.columns * h.bits_allocated + 7) // 8
        actual = len(ds.PixelData)
        if actual < expected:
            raise Rejection("pixel_data_size_mismatch", f"(7FE0,0010) has {actual} bytes, expected {expected}")
    else:
        try:
            decoder = get_decoder(h.syntax)
        except NotImplementedError:
            raise Rejection("no_decoder", f"(0002,0010) Transfer Syntax UID {h.syntax} has no decoder") from None
        if not decoder.is_available:
            raise Rejection("no_decoder", f"(0002,0010) Transfer Syntax UID {h.syntax}: no plugin installed")
    return h


_LITTLE_ENDIAN_NATIVE = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99"})


def stored_pixels(ds: Dataset, header: ImageHeader | None = None) -> np.ndarray:
    """Stored values with unused high bits masked and signed values sign-extended.

    Little-endian native data is read straight from the buffer (the common case, and the hot
    path); everything else goes through pydicom's pixel handlers, which do the same masking.
    """
    h = header or ImageHeader.of(ds)
    if h.syntax in _LITTLE_ENDIAN_NATIVE and h.bits_allocated in (8, 16, 32):
        dtype = np.dtype(f"<{'i' if h.signed else 'u'}{h.bits_allocated // 8}")
        values = np.frombuffer(ds.PixelData, dtype=dtype, count=h.rows * h.columns).reshape(h.rows, h.columns)
        unused = h.bits_allocated - h.bits_stored
        if not unused:
            return values
        if h.signed:
            return (values << unused) >> unused  # arithmetic shift sign-extends
        return values & np.array((1 << h.bits_stored) - 1, dtype=dtype)
    try:
        return ds.pixel_array
    except Exception as exc:
        raise Rejection("decode_failed", f"(7FE0,0010) could not be decoded ({type(exc).__name__})") from None


def has_voi(ds: Dataset) -> bool:
    return "VOILUTSequence" in ds or ("WindowCenter" in ds and "WindowWidth" in ds)


def voi_output_range(ds: Dataset) -> tuple[float, float]:
    """The output range of pydicom's ``apply_voi_lut`` for this dataset (PS3.3 C.11.2)."""
    if "VOILUTSequence" in ds and ds.VOILUTSequence:
        return 0.0, float(2 ** int(ds.VOILUTSequence[0].LUTDescriptor[2]) - 1)
    bits = int(ds.BitsStored)
    if ds.get("ModalityLUTSequence"):
        y_min, y_max = 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    elif int(ds.get("PixelRepresentation", 0)) == 0:
        y_min, y_max = 0.0, float(2**bits - 1)
    else:
        y_min, y_max = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        y_min, y_max = y_min * float(slope) + float(intercept), y_max * float(slope) + float(intercept)
    return min(y_min, y_max), max(y_min, y_max)


def check_window(ds: Dataset) -> None:
    """Refuse windows pydicom would refuse, with the tag named."""
    if "VOILUTSequence" in ds or "WindowWidth" not in ds:
        return
    width = _first(ds, "WindowWidth")
    if width is None or width < 1:
        raise Rejection("invalid_header", "(0028,1051) Window Width must be >= 1")


def widen_8bit_voi_lut(ds: Dataset) -> None:
    """pydicom 3.0 indexes an 8-bit VOI LUT with uint8 indices, wrapping inputs above 255; a
    16-bit nominal depth gives identical outputs without the wrap."""
    if "VOILUTSequence" in ds and ds.VOILUTSequence:
        descriptor = list(ds.VOILUTSequence[0].LUTDescriptor)
        if descriptor[2] == 8:
            ds.VOILUTSequence[0].LUTDescriptor = [descriptor[0], descriptor[1], 16]


def display_pixels(ds: Dataset, stored: np.ndarray, photometric: str | None = None) -> np.ndarray:
    """Modality LUT, then VOI LUT or first window, to 8 bits, then MONOCHROME1 inverted.

    Without a VOI LUT or window: 8-bit unsigned data without rescale is shown as stored;
    anything else is scaled from its own minimum..maximum. The common case (rescale + linear
    window) is computed in one vectorised step; LUT sequences and non-linear VOI functions
    go through pydicom's ``apply_modality_lut`` / ``apply_voi_lut``.
    """
    fast = _linear_display(ds, stored)
    display = fast if fast is not None else _lut_display(ds, stored)
    if (photometric or str(ds.PhotometricInterpretation).strip().upper()) == "MONOCHROME1":
        display = 255 - display
    return display


def _to_uint8(values: np.ndarray, low: float, high: float) -> np.ndarray:
    scale = 255.0 / (high - low) if high > low else 0.0
    return np.rint(np.clip((np.asarray(values, dtype=np.float64) - low) * scale, 0, 255)).astype(np.uint8)


def _lut_display(ds: Dataset, stored: np.ndarray) -> np.ndarray:
    values = apply_modality_lut(stored, ds)
    if has_voi(ds):
        check_window(ds)
        low, high = voi_output_range(ds)
        widen_8bit_voi_lut(ds)
        values = apply_voi_lut(values, ds, index=0, prefer_lut=True)
    elif int(ds.BitsStored) <= 8 and int(ds.get("PixelRepresentation", 0)) == 0 and values is stored:
        low, high = 0.0, float(2 ** int(ds.BitsStored) - 1)
    else:
        low, high = float(values.min()), float(values.max())
    return _to_uint8(values, low, high)


def _first(ds: Dataset, keyword: str) -> float | None:
    """First value of a numeric string element (DS/IS). Read from the raw text while pydicom has
    not converted it yet: its conversion costs more than the whole window arithmetic."""
    element = ds.get_item(keyword)
    if element is None:
        return None
    if isinstance(element, RawDataElement) and element.VR in (None, "DS", "IS") and isinstance(element.value, bytes):
        text = element.value.split(b"\\", 1)[0].strip(b" \x00")
        return float(text) if text else None
    value = ds[keyword].value
    value = value[0] if isinstance(value, pydicom.multival.MultiValue) else value
    return None if value is None or value == "" else float(value)


def _linear_display(ds: Dataset, stored: np.ndarray) -> np.ndarray | None:
    """PS3.3 C.11.1 rescale + C.11.2.1.2 LINEAR / LINEAR_EXACT window, or None when LUTs apply."""
    if "ModalityLUTSequence" in ds or "VOILUTSequence" in ds:
        return None
    slope, intercept = _first(ds, "RescaleSlope"), _first(ds, "RescaleIntercept")
    center, width = _first(ds, "WindowCenter"), _first(ds, "WindowWidth")
    if center is None or width is None:
        if slope is None and stored.dtype == np.uint8:
            return stored.copy()
        return None  # min..max of the modality values: rare enough for the pydicom path
    function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
    if function not in ("LINEAR", "LINEAR_EXACT"):
        return None
    check_window(ds)
    if width == 1 and function == "LINEAR":
        return None  # a step function: pydicom's path handles the degenerate width
    if slope is None or intercept is None:
        slope, intercept = 1.0, 0.0
    if function == "LINEAR":
        low, span = center - 0.5 - (width - 1) / 2, width - 1
    else:
        low, span = center - width / 2, width
    # 255 * clip((stored * slope + intercept - low) / span, 0, 1) as one affine map, in place
    values = stored * (255 * slope / span)
    values += 255 * (intercept - low) / span
    np.clip(values, 0, 255, out=values)
    return np.rint(values, out=values).astype(np.uint8)


def letterbox(image: np.ndarray, size: int) -> np.ndarray:
    """Resize to ``size`` x ``size`` keeping the aspect ratio: the longer side becomes ``size``,
    the shorter one is centred and padded with black (0)."""
    height, width = image.shape
    if (height, width) == (size, size):
        return np.ascontiguousarray(image)
    scale = size / max(height, width)
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    out = np.zeros((size, size), dtype=np.uint8)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    out[top : top + new_h, left : left + new_w] = resized
    return out


class DecodedImage(NamedTuple):
    dataset: Dataset
    pixels: np.ndarray  # image_size x image_size uint8 display image
    header: ImageHeader


def decode(data: bytes, image_size: int, limits: Limits = Limits()) -> DecodedImage:
    """Bytes of one file -> its dataset, display image (``image_size`` square) and image attributes."""
    ds = parse(data)
    header = validate(ds, limits)
    stored = stored_pixels(ds, header)
    if stored.ndim != 2:
        raise Rejection("invalid_header", f"decoded pixel array has shape {stored.shape}, expected 2-D")
    try:
        display = display_pixels(ds, stored, header.photometric)
    except Rejection:
        raise
    except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
        raise Rejection("invalid_header", f"(0028,xxxx) LUT/window attributes unusable ({type(exc).__name__})") from None
    return DecodedImage(ds, letterbox(display, image_size), header)
