"""Tiny real DICOM fixtures shared by the tests: known images and one builder per refusal."""

from __future__ import annotations

import numpy as np
import pydicom
from pydicom.data import get_testdata_file

from medflow import synthetic

PHI = synthetic.Phi.for_patient(7)
RAMP = np.tile(np.linspace(0, 1, 32), (32, 1))  # known image: a horizontal ramp 0..1
RAMP_8BIT = np.rint(RAMP * 255).astype(np.uint8)
RAMP_12BIT = np.rint(RAMP * 4000).astype(np.uint16)


def bytes_of(ds: pydicom.Dataset) -> bytes:
    return synthetic.to_bytes(ds)


def multi_frame() -> bytes:
    ds = synthetic.encode_image(RAMP, "u8", PHI)
    ds.NumberOfFrames = 2
    ds.PixelData = ds.PixelData * 2
    return bytes_of(ds)


def colour() -> bytes:
    ds = synthetic.encode_image(RAMP, "u8", PHI)
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.PixelData = ds.PixelData * 3
    return bytes_of(ds)


def bomb() -> bytes:
    ds = synthetic.encode_image(RAMP, "j2k", PHI)
    ds.Rows = ds.Columns = 60000  # 3.6 Gpx declared, a few bytes of data
    return bytes_of(ds)


def no_decoder() -> bytes:
    ds = synthetic.encode_image(RAMP, "j2k", PHI)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2: no decoder installed
    return bytes_of(ds)


def corrupt_j2k() -> bytes:
    ds = synthetic.encode_image(RAMP, "j2k", PHI)
    ds.PixelData = pydicom.encaps.encapsulate([b"\xff\x4f\xff\x51" + b"\x00" * 64])
    return bytes_of(ds)


def bad_window() -> bytes:
    ds = synthetic.encode_image(RAMP, "u16_window", PHI)
    ds.WindowWidth = 0
    return bytes_of(ds)


def no_pixels() -> bytes:
    ds = synthetic.encode_image(RAMP, "u8", PHI)
    del ds.PixelData
    return bytes_of(ds)


def short_pixels() -> bytes:
    ds = synthetic.encode_image(RAMP, "u8", PHI)
    ds.PixelData = ds.PixelData[:100]
    return bytes_of(ds)


# (builder of the file's bytes, expected reason): tiny real DICOM fixtures per decode-level refusal
DECODE_REFUSALS = {
    "not_dicom": lambda: b"%PDF-1.4 definitely not DICOM" * 10,
    "truncated": lambda: synthetic.to_bytes(synthetic.encode_image(RAMP, "u16_window", PHI))[:-300],
    "no_pixel_data": no_pixels,
    "pixel_data_size_mismatch": short_pixels,
    "no_decoder": no_decoder,
    "not_an_image": lambda: open(get_testdata_file("test-SR.dcm"), "rb").read(),
    "multi_frame": multi_frame,
    "colour": colour,
    "too_large": bomb,
    "decode_failed": corrupt_j2k,
}




INGEST_REFUSALS = {**DECODE_REFUSALS, "invalid_header": bad_window}
