"""Albumentations pipelines built from a typed config; applied to training images only, on CPU."""

from __future__ import annotations

import albumentations as A
import numpy as np
from pydantic import BaseModel, Field


class AugmentConfig(BaseModel):
    """Training-time augmentation; every probability 0 switches that transform off."""

    horizontal_flip: float = Field(0.5, ge=0, le=1, description="probability of a left-right flip")
    vertical_flip: float = Field(0.0, ge=0, le=1, description="probability of an up-down flip")
    affine: float = Field(0.7, ge=0, le=1, description="probability of rotate/scale/translate")
    rotate_degrees: float = Field(10, ge=0, le=180)
    scale: float = Field(0.1, ge=0, le=0.5, description="zoom in or out by up to this fraction")
    translate: float = Field(0.06, ge=0, le=0.5, description="shift by up to this fraction of the side")
    brightness_contrast: float = Field(0.5, ge=0, le=1, description="probability of a brightness/contrast change")
    brightness_contrast_limit: float = Field(0.15, ge=0, le=1)
    noise: float = Field(0.2, ge=0, le=1, description="probability of Gaussian noise")
    noise_std: float = Field(0.03, ge=0, le=0.5, description="noise standard deviation, fraction of full scale")
    crop: float = Field(0.3, ge=0, le=1, description="probability of a random resized crop")
    crop_min_area: float = Field(0.8, gt=0, le=1, description="smallest crop, as a fraction of the image area")


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
