"""An assembled series -> the 8-bit volume a radiologist would scroll through, resampled to N x N x N.

Each slice is decoded exactly as a 2-D image is (modality LUT, then VOI LUT or window, to 8 bits,
MONOCHROME1 inverted), with one window for the whole series: the one asked for (in modality units,
e.g. Hounsfield), else the series' first slice's first window; a series with neither is scaled from
its own minimum..maximum (8-bit data without rescale is shown as stored, as for images).

Resampling keeps physical proportions: the largest physical extent of the volume becomes N voxels,
every axis is scaled by the same mm per voxel (isotropic output), and the shorter axes are centred
and padded with black. Axes that shrink are area-averaged (no aliasing), axes that grow are
interpolated trilinearly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom.pixels import apply_modality_lut

from tasks.core.refusals import Rejection
from tasks.dicom.decode import _first, display_pixels
from tasks.dicom.header import Limits
from tasks.dicom.series import Series, assemble


@dataclass(frozen=True)
class Window:
    center: float
    width: float
    function: str = "LINEAR"


def series_window(series: Series, requested: tuple[float, float] | None = None) -> Window | None:
    """The one window of the series, asked for or its first slice's (None: the series has none)."""
    if requested is not None:
        return Window(*requested)
    first = series.planes[0].display
    center, width = _first(first, "WindowCenter"), _first(first, "WindowWidth")
    if center is not None and width is not None and "VOILUTSequence" not in first:
        function = str(first.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
        return Window(center, width, function if function in ("LINEAR", "LINEAR_EXACT") else "LINEAR")
    return None


def _own_range(series: Series, stored: list[np.ndarray]) -> Window:
    low = high = None
    for plane, values in zip(series.planes, stored, strict=True):
        modality = apply_modality_lut(values, plane.display)
        low = float(modality.min()) if low is None else min(low, float(modality.min()))
        high = float(modality.max()) if high is None else max(high, float(modality.max()))
    return Window((low + high) / 2, max(high - low, 1.0), "LINEAR_EXACT")


def _needs_own_range(series: Series) -> bool:
    first, header = series.planes[0].display, series.planes[0].header
    if any("VOILUTSequence" in p.display for p in series.planes) or _first(first, "WindowCenter") is not None:
        return False
    return not (header.bits_stored <= 8 and not header.signed and _first(first, "RescaleSlope") is None)


def display_volume(series: Series, requested: tuple[float, float] | None = None) -> np.ndarray:
    """slices x rows x columns uint8, slices ascending along the normal."""
    stored = [plane.stored() for plane in series.planes]
    window = series_window(series, requested)
    if window is None and _needs_own_range(series):
        window = _own_range(series, stored)
    first = series.planes[0].header
    volume = np.empty((len(stored), first.rows, first.columns), np.uint8)
    for i, (plane, values) in enumerate(zip(series.planes, stored, strict=True)):
        if values.shape != (first.rows, first.columns):
            raise Rejection("invalid_header", f"a slice decoded to {values.shape}, expected {first.rows}x{first.columns}")
        ds = plane.display
        if window is not None:
            if "VOILUTSequence" in ds:
                del ds.VOILUTSequence
            ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = window.center, window.width, window.function
        try:
            volume[i] = display_pixels(ds, values, plane.header.photometric)
        except Rejection:
            raise
        except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
            raise Rejection("invalid_header", f"(0028,xxxx) LUT/window attributes unusable ({type(exc).__name__})") from None
    return volume


def resample(volume: np.ndarray, spacing: tuple[float, float, float], size: int) -> tuple[np.ndarray, float]:
    """``size``^3 uint8 with isotropic voxels (their side in mm returned), aspect kept, centred, padded black."""
    import torch
    import torch.nn.functional as F

    extent = np.array(volume.shape) * np.array(spacing, dtype=np.float64)
    voxel = float(extent.max() / size)
    target = [int(v) for v in np.clip(np.rint(extent / voxel), 1, size)]
    values = torch.from_numpy(np.ascontiguousarray(volume)).float()[None, None]
    shrunk = [min(t, s) for t, s in zip(target, volume.shape, strict=True)]
    if shrunk != list(volume.shape):
        values = F.adaptive_avg_pool3d(values, shrunk)
    if shrunk != target:
        values = F.interpolate(values, size=target, mode="trilinear", align_corners=False)
    resized = values[0, 0].round().clamp(0, 255).to(torch.uint8).numpy()
    out = np.zeros((size, size, size), np.uint8)
    starts = [(size - t) // 2 for t in target]
    out[tuple(slice(s, s + t) for s, t in zip(starts, target, strict=True))] = resized
    return out, voxel


@dataclass(frozen=True)
class DecodedVolume:
    series: Series
    pixels: np.ndarray  # size^3 uint8
    voxel: float  # mm per voxel, every axis


def decode_series(files: list[bytes], size: int, window: tuple[float, float] | None = None,
                  limits: Limits = Limits()) -> DecodedVolume:
    """A series' files (or one multi-frame file) -> its volume, as ingestion and prediction both see it."""
    series = assemble(files, limits)
    pixels, voxel = resample(display_volume(series, window), series.spacing, size)
    return DecodedVolume(series, pixels, voxel)
