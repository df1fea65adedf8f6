"""One DICOM file's header: is it DICOM, is it whole, is it one monochrome image within the limits.

Every refusal is a :class:`tasks.core.refusals.Rejection` naming the DICOM tag involved.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

import pydicom
import pydicom.config
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels.decoders.base import get_decoder

from tasks.core.refusals import Rejection

# pydicom's value-validation warnings may quote header values (names, IDs) into logs, and cost time;
# the checks that matter are made below, and their messages name tags only.
pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE

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


@dataclass(frozen=True)
class Limits:
    """Refusal thresholds checked before anything large is allocated."""

    max_file_bytes: int = 1 << 30  # files larger than this are not read at all
    max_pixels: int = 1 << 26  # Rows x Columns (64 Mpx)
    max_decoded_bytes: int = 1 << 28  # declared decoded size, all frames and samples
    max_slices: int = 2048  # slices (files or frames) of one series
    max_volume_bytes: int = 1 << 30  # a series' declared decoded size, all slices


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


def sop_class_of(ds: Dataset) -> str:
    return str(ds.get("SOPClassUID", "") or ds.file_meta.get("MediaStorageSOPClassUID", ""))


def is_non_image_object(ds: Dataset) -> bool:
    """SR, RT plan, waveform, DICOMDIR, ...: objects that never hold an image (by SOP class)."""
    return "DirectoryRecordSequence" in ds or sop_class_of(ds).startswith(NON_IMAGE_SOP_PREFIXES)


def validate(ds: Dataset, limits: Limits, frames: bool = False) -> ImageHeader:
    """Refuse what cannot or must not be decoded, before any pixel is allocated (``frames``: a
    multi-frame file is a volume, not a refusal)."""
    if is_non_image_object(ds):
        raise Rejection("not_an_image", f"(0008,0016) SOP Class UID {sop_class_of(ds)} is not an image")
    if "PixelData" not in ds:
        raise Rejection("no_pixel_data")
    h = ImageHeader.of(ds)
    declared = h.rows * h.columns * h.samples * h.frames * max(h.bits_allocated // 8, 1)
    if h.rows * h.columns > limits.max_pixels or declared > limits.max_decoded_bytes:
        raise Rejection("too_large", f"(0028,0010)x(0028,0011) {h.rows}x{h.columns}x{h.frames} frames over the limit")
    if h.frames > 1 and not frames:
        raise Rejection("multi_frame", f"(0028,0008) Number of Frames is {h.frames}, expected 1")
    if h.samples != 1 or not h.photometric.startswith("MONOCHROME"):
        raise Rejection("colour", f"(0028,0004) Photometric Interpretation {h.photometric} is not MONOCHROME1/2")
    if h.syntax in _NATIVE_SYNTAXES:
        expected = (h.rows * h.columns * h.frames * h.bits_allocated + 7) // 8
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

