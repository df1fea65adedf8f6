"""Decoding to display pixels: every encoding against known values, LUT/window rules, refusals."""

from __future__ import annotations

import os

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from medflow import synthetic
from tasks.core.refusals import Reason, Rejection
from tasks.dicom import decode as dicom
from tasks.dicom.decode import decode
from tasks.dicom.header import Limits
from tests.fixtures import DECODE_REFUSALS, PHI, RAMP, RAMP_8BIT, RAMP_12BIT


def window_reference(stored: np.ndarray, slope: float, intercept: float, center: float, width: float,
                     bits: int = 12) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2 linear window to 8 bits, written out independently of pydicom."""
    hu = stored.astype(np.float64) * slope + intercept
    y_min, y_max = intercept, (2**bits - 1) * slope + intercept
    c, w = center - 0.5, width - 1
    out = np.where(hu <= c - w / 2, y_min, np.where(hu > c + w / 2, y_max, ((hu - c) / w + 0.5) * (y_max - y_min) + y_min))
    return np.rint((out - y_min) / (y_max - y_min) * 255).astype(np.uint8)


def roundtrip(encoding: str, image: np.ndarray = RAMP, size: int = 32) -> np.ndarray:
    ds = synthetic.encode_image(image, encoding, PHI)
    return decode(synthetic.to_bytes(ds, raw=encoding == "raw"), size).pixels


class TestDecodeEncodings:
    @pytest.mark.parametrize("encoding", ["u8", "implicit", "big_endian", "deflated", "raw"])
    def test_8bit_native_syntaxes_are_exact(self, encoding):
        np.testing.assert_array_equal(roundtrip(encoding), RAMP_8BIT)

    @pytest.mark.parametrize("encoding", ["u16_window", "rle", "j2k", "jpeg_lossless", "jpeg_ls"])
    def test_16bit_rescale_and_first_window(self, encoding):
        expected = window_reference(RAMP_12BIT, 1, -1000, 1000, 4000)
        np.testing.assert_array_equal(roundtrip(encoding), expected)

    def test_monochrome1_is_inverted_for_display(self):
        out = roundtrip("mono1")
        np.testing.assert_array_equal(out, RAMP_8BIT)  # stored inverted, displayed as MONOCHROME2
        assert out[0, 0] == 0 and out[0, -1] == 255

    def test_jpeg_baseline_is_close(self):
        out = roundtrip("jpeg")
        assert np.abs(out.astype(int) - RAMP_8BIT).mean() < 2

    @pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm",
                                      "MR_small_implicit.dcm", "MR_small_bigendian.dcm"])
    def test_third_party_encodings_match_the_uncompressed_original(self, name):
        reference = decode(open(get_testdata_file("MR_small.dcm"), "rb").read(), 64).pixels
        np.testing.assert_array_equal(decode(open(get_testdata_file(name), "rb").read(), 64).pixels, reference)

    def test_jpeg_extended_12bit_decodes(self):
        out = decode(open(get_testdata_file("JPGExtended.dcm"), "rb").read(), 64).pixels
        assert out.shape == (64, 64) and out.max() > out.min()


def native_16bit(stored: np.ndarray, bits_stored: int, signed: bool) -> pydicom.Dataset:
    ds = synthetic.encode_image(RAMP, "u16_window", PHI)
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits_stored, bits_stored - 1, int(signed)
    ds.Rows, ds.Columns = stored.shape
    ds.PixelData = stored.astype(np.uint16).tobytes()
    for keyword in ("RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth"):
        delattr(ds, keyword)
    return ds


class TestBitsStored:
    def test_unused_high_bits_are_masked(self):
        clean = np.array([[0, 1000], [2000, 4095]], dtype=np.uint16)
        ds = native_16bit(clean | 0xF000, 12, signed=False)  # junk in the 4 unused bits
        np.testing.assert_array_equal(dicom.stored_pixels(ds), clean)

    def test_signed_values_are_sign_extended(self):
        values = np.array([[-2048, -1], [0, 2047]], dtype=np.int16)
        raw = (values.astype(np.uint16) & 0x0FFF) | 0xA000  # 12-bit two's complement, junk above
        ds = native_16bit(raw, 12, signed=True)
        np.testing.assert_array_equal(dicom.stored_pixels(ds), values)
        display = dicom.display_pixels(ds, dicom.stored_pixels(ds))  # no window: min..max
        np.testing.assert_array_equal(display, [[0, 127], [128, 255]])


class TestVoi:
    def test_sigmoid_window_and_voi_lut_sequence(self):
        ds = synthetic.encode_image(RAMP, "u16_window", PHI)
        ds.VOILUTFunction = "SIGMOID"
        out = dicom.display_pixels(ds, dicom.stored_pixels(ds))
        assert out[0, 0] < 40 and out[0, -1] > 215 and np.all(np.diff(out[0].astype(int)) >= 0)
        ds = synthetic.encode_image(RAMP, "u16_window", PHI)
        item = pydicom.Dataset()
        item.LUTDescriptor = [4096, 0, 8]
        item.add_new(0x00283006, "US", [int(v) for v in 255 - np.arange(4096) // 16])  # an inverting 8-bit LUT
        del ds.WindowCenter, ds.WindowWidth, ds.RescaleSlope, ds.RescaleIntercept
        ds.VOILUTSequence = pydicom.Sequence([item])
        out = dicom.display_pixels(ds, dicom.stored_pixels(ds))
        assert out[0, 0] == 255 and out[0, -1] == 5

    def test_window_width_below_one_names_the_tag(self):
        ds = synthetic.encode_image(RAMP, "u16_window", PHI)
        ds.WindowWidth = 0
        with pytest.raises(Rejection, match=r"\(0028,1051\) Window Width must be >= 1"):
            decode(synthetic.to_bytes(ds), 32)


class TestLetterbox:
    def test_non_square_keeps_aspect_and_pads_black(self):
        wide = np.full((20, 40), 200, dtype=np.uint8)
        out = dicom.letterbox(wide, 32)
        assert out.shape == (32, 32)
        assert (out[:8] == 0).all() and (out[-8:] == 0).all() and (out[8:24] == 200).all()

    def test_upscale(self):
        assert dicom.letterbox(np.zeros((8, 8), np.uint8), 32).shape == (32, 32)


class TestRefusals:
    @pytest.mark.parametrize("reason", sorted(DECODE_REFUSALS))
    def test_reason(self, reason):
        with pytest.raises(Rejection) as info:
            decode(DECODE_REFUSALS[reason](), 32, Limits())
        assert info.value.reason == reason

    @pytest.mark.parametrize("name", ["waveform_ecg.dcm", "rtplan.dcm", os.path.join("dicomdirtests", "DICOMDIR")])
    def test_non_images(self, name):
        path = get_testdata_file(name) or os.path.join(os.path.dirname(get_testdata_file("CT_small.dcm")), name)
        with pytest.raises(Rejection, match="not_an_image"):
            decode(open(path, "rb").read(), 32)

    def test_every_reason_has_a_description(self):
        assert all(reason.description for reason in Reason)
        with pytest.raises(ValueError):
            Rejection("made_up_reason")


class TestFastPathsMatchPydicom:
    """The vectorised hot paths must give what pydicom's own handlers and LUT helpers give."""

    @pytest.mark.parametrize("seed", range(6))
    def test_native_pixels_and_linear_window(self, seed):
        rng = np.random.default_rng(seed)
        bits_stored, signed = int(rng.integers(9, 17)), bool(seed % 2)
        raw = rng.integers(0, 2**16, (24, 20), dtype=np.uint16)  # junk above BitsStored too
        ds = native_16bit(raw, bits_stored, signed)
        ds.RescaleSlope, ds.RescaleIntercept = float(rng.uniform(0.5, 2)), float(rng.uniform(-1024, 100))
        ds.WindowCenter = [float(rng.uniform(-200, 800)), 40.0]
        ds.WindowWidth = [float(rng.uniform(2, 3000)), 400.0]
        ds.VOILUTFunction = "LINEAR_EXACT" if seed % 3 == 0 else "LINEAR"
        fast = dicom.stored_pixels(ds)
        np.testing.assert_array_equal(fast, ds.pixel_array)
        reference = dicom._lut_display(ds, ds.pixel_array)  # pydicom's apply_modality_lut + apply_voi_lut
        assert np.abs(dicom._linear_display(ds, fast).astype(int) - reference).max() <= 1
