"""Albumentations pipelines built from a typed config; applied to training images only, on CPU."""

from __future__ import annotations

import albumentations as A
import numpy as np

from tasks.model.config import AugmentConfig


class Augmenter:
    """Callable: uint8 H x W image -> augmented uint8 H x W image. Random draws come from one
    seeded generator, so a worker with a given seed replays the same sequence; pickles cleanly."""

    def __init__(self, config: AugmentConfig, image_size: int, seed: int = 0) -> None:
        self.config, self.image_size, self.seed = config, image_size, seed
        self.pipeline = build_pipeline(config, image_size, seed)

    def __call__(self, image: np.ndarray) -> np.ndarray:
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
        A.RandomBrightnessContrast(brightness_limit=c.brightness_contrast_limit,
                                   contrast_limit=c.brightness_contrast_limit, p=c.brightness_contrast),
        A.GaussNoise(std_range=(c.noise_std / 2, c.noise_std), p=c.noise),
    ]
    return A.Compose([t for t in transforms if t.p > 0], seed=seed)
