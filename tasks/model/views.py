"""Test-time views of a batch of network inputs (N x 1 x H x W, or x D x H x W for volumes): the plain
input, its left-right flip, a centre zoom, and the flip of the zoom. A member's prediction averages
its probabilities over the views its model card names."""

from __future__ import annotations

import torch
import torch.nn.functional as F


class View(tuple):
    """(flipped, zoom factor or None), hashable, so it keys a member's probabilities per view."""

    def __new__(cls, flip: bool = False, zoom: float | None = None) -> View:
        return super().__new__(cls, (bool(flip), zoom))

    @property
    def flip(self) -> bool:
        return self[0]

    @property
    def zoom(self) -> float | None:
        return self[1]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.zoom:
            x = centre_zoom(x, self.zoom)
        return torch.flip(x, dims=[-1]) if self.flip else x


def views(hflip: bool, zoom: float | None) -> list[View]:
    """Every view of a prediction with these settings: the plain input, and with ``hflip`` its flip,
    and with ``zoom`` the zoomed input (flipped too with ``hflip``)."""
    zooms = [None, zoom] if zoom else [None]
    flips = [False, True] if hflip else [False]
    return [View(flip, z) for z in zooms for flip in flips]


def centre_zoom(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Magnify by ``factor`` about the centre, keeping the input's size: linear interpolation to
    round(size x factor) along each spatial axis, then the central crop."""
    size = x.shape[2:]
    larger = [round(n * factor) for n in size]
    zoomed = F.interpolate(x, size=larger, mode="bilinear" if len(size) == 2 else "trilinear", align_corners=False)
    return zoomed[(..., *(slice((big - n) // 2, (big - n) // 2 + n) for big, n in zip(larger, size, strict=True)))]
