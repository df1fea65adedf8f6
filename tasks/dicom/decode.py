"""Decode one DICOM file to the 8-bit display image a radiologist would see (modality LUT, VOI
LUT or first window, MONOCHROME1 inverted), letterboxed to the dataset's geometry."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from tasks.core.refusals import Rejection
from tasks.dicom.header import ImageHeader, Limits, parse, validate

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
    return _pixel_array(ds)


def stored_frames(ds: Dataset, header: ImageHeader) -> np.ndarray:
    """Every frame's stored values (frames x rows x columns), masked and sign-extended like ``stored_pixels``."""
    return _pixel_array(ds).reshape(header.frames, header.rows, header.columns)


def _pixel_array(ds: Dataset) -> np.ndarray:
    """pydicom's pixel handlers (which mask and sign-extend), a failure as ``decode_failed``."""
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


@dataclass(frozen=True)
class DecodedImage:
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
