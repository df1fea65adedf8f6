"""Augmentation built from a typed config; applied to training data only, on CPU.

Images: an Albumentations pipeline. Volumes (depth x height x width): Albumentations where it has
the transform (flips, brightness/contrast and noise applied consistently to every slice through its
``images`` target; its 3-D padding and crop for random shifts, coarse dropout and cube symmetries),
MONAI's 3-D random affine (rotation about every axis, scale, translation) where it has none.
"""

from __future__ import annotations

import albumentations as A
import numpy as np

from tasks.model.config import AugmentConfig


class Augmenter:
    """Callable: a uint8 H x W image (or D x H x W volume) -> its augmented uint8 copy. Random draws
    come from seeded generators, so a worker with a given seed replays the same sequence; pickles cleanly."""

    def __init__(self, config: AugmentConfig, image_size: int, seed: int = 0) -> None:
        self.config, self.image_size, self.seed = config, image_size, seed
        self.pipeline = build_pipeline(config, image_size, seed)
        self.volume: VolumeAugmenter | None = None  # built on the first volume

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if image.ndim == 3:
            if self.volume is None:
                self.volume = VolumeAugmenter(self.config, self.image_size, self.seed)
            return self.volume(image)
        return self.pipeline(image=image)["image"]

    def __reduce__(self):
        return (Augmenter, (self.config, self.image_size, self.seed))


def build_pipeline(config: AugmentConfig, image_size: int, seed: int = 0) -> A.Compose:
    c = config
    transforms = [
        A.HorizontalFlip(p=c.horizontal_flip),
        A.VerticalFlip(p=c.vertical_flip),
        A.Affine(rotate=(-c.rotate_degrees, c.rotate_degrees), scale=(1 - c.scale, 1 + c.scale),
                 translate_percent=(-c.translate, c.translate), border_mode=0, fill=0, p=c.affine),
        A.RandomResizedCrop(size=(image_size, image_size), scale=(c.crop_min_area, 1.0), ratio=(0.9, 1.1), p=c.crop),
        A.D4(p=c.symmetry),
        *_intensity(c),
        A.CoarseDropout(num_holes_range=(1, 4), hole_height_range=_hole(c), hole_width_range=_hole(c), fill=0,
                        p=c.coarse_dropout),
    ]
    return A.Compose([t for t in transforms if t.p > 0], seed=seed)


def _hole(c: AugmentConfig) -> tuple[float, float]:
    return (c.dropout_size / 4, c.dropout_size)


def _intensity(c: AugmentConfig) -> list:
    return [A.RandomBrightnessContrast(brightness_limit=c.brightness_contrast_limit,
                                       contrast_limit=c.brightness_contrast_limit, p=c.brightness_contrast),
            A.GaussNoise(std_range=(c.noise_std / 2, c.noise_std), p=c.noise)]


class VolumeAugmenter:
    """The same config for volumes: ``horizontal_flip``/``vertical_flip`` flip every slice left-right /
    up-down; ``affine`` is a 3-D rotation (``rotate_degrees`` about each axis), scale and translation;
    ``crop`` is a random shift of up to the margin a ``crop_min_area`` crop would leave (3-D pad, then
    3-D crop back to size); brightness/contrast and noise apply alike to every slice; ``symmetry`` is
    one of the cube's 48 (volumes are cubes once ingested) and ``coarse_dropout`` blanks 3-D boxes, last."""

    def __init__(self, config: AugmentConfig, image_size: int, seed: int = 0) -> None:
        from monai.transforms import RandAffine  # MONAI only where volumes are trained

        c = config
        slices = [A.HorizontalFlip(p=c.horizontal_flip), A.VerticalFlip(p=c.vertical_flip), *_intensity(c)]
        self.slices = A.Compose([t for t in slices if t.p > 0], seed=seed)
        self.margin = int(round(image_size * (1 - c.crop_min_area ** (1 / 3)) / 2)) if c.crop > 0 else 0
        self.crop, self.seed = c.crop, seed
        whole = [A.CubicSymmetry(p=c.symmetry), A.CoarseDropout3D(
            num_holes_range=(1, 4), hole_depth_range=_hole(c), hole_height_range=_hole(c), hole_width_range=_hole(c),
            fill=0, p=c.coarse_dropout)]
        self.whole = A.Compose([t for t in whole if t.p > 0], seed=seed + 2)  # after the affine
        self.shifts: dict[tuple[int, ...], A.Compose] = {}  # per volume shape: pad by the margin, crop back
        radians = float(np.radians(c.rotate_degrees))
        self.affine = RandAffine(prob=c.affine, rotate_range=(radians,) * 3, scale_range=(c.scale,) * 3,
                                 translate_range=(c.translate * image_size,) * 3, padding_mode="zeros",
                                 mode="bilinear") if c.affine > 0 else None
        if self.affine is not None:
            self.affine.set_random_state(seed)

    def _shift(self, shape: tuple[int, ...]) -> A.Compose:
        if shape not in self.shifts:
            self.shifts[shape] = A.Compose([A.PadIfNeeded3D(min_zyx=tuple(n + 2 * self.margin for n in shape), fill=0),
                                            A.RandomCrop3D(size=shape)], p=self.crop, seed=self.seed + 1)
        return self.shifts[shape]

    def __call__(self, volume: np.ndarray) -> np.ndarray:
        out = self.slices(images=volume)["images"] if self.slices.transforms else volume
        if self.margin:
            out = self._shift(out.shape)(volume=out)["volume"]
        if self.affine is not None:
            moved = self.affine(out[None].astype(np.float32))
            out = np.clip(np.rint(np.asarray(moved)[0]), 0, 255).astype(np.uint8)
        if self.whole.transforms:
            out = self.whole(volume=out)["volume"]
        return np.ascontiguousarray(out)
