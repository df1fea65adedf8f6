"""Augmentation built from config: shape and dtype kept, seeded, off when probabilities are 0."""

from __future__ import annotations

import pickle

import numpy as np

from tasks.model.config import AugmentConfig
from tasks.train.augment import Augmenter
from tests.fixtures import RAMP_8BIT

OFF = AugmentConfig(horizontal_flip=0, affine=0, brightness_contrast=0, noise=0, crop=0)


def test_keeps_shape_and_dtype_and_changes_pixels():
    out = Augmenter(AugmentConfig(horizontal_flip=1.0), 32, seed=1)(RAMP_8BIT)
    assert out.shape == (32, 32) and out.dtype == np.uint8
    assert not np.array_equal(out, RAMP_8BIT)


def test_all_probabilities_zero_is_identity():
    np.testing.assert_array_equal(Augmenter(OFF, 32)(RAMP_8BIT), RAMP_8BIT)


def test_flip_only_is_an_exact_mirror():
    flip = OFF.model_copy(update={"horizontal_flip": 1.0})
    np.testing.assert_array_equal(Augmenter(flip, 32)(RAMP_8BIT), RAMP_8BIT[:, ::-1])


def test_seeded_and_picklable():
    a, b = Augmenter(AugmentConfig(), 32, seed=5), pickle.loads(pickle.dumps(Augmenter(AugmentConfig(), 32, seed=5)))
    for _ in range(5):
        np.testing.assert_array_equal(a(RAMP_8BIT), b(RAMP_8BIT))
    other = Augmenter(AugmentConfig(), 32, seed=6)
    assert any(not np.array_equal(a(RAMP_8BIT), other(RAMP_8BIT)) for _ in range(5))


VOLUME = np.random.default_rng(0).integers(0, 256, (12, 16, 16), dtype=np.uint8)


def test_volumes_all_probabilities_zero_is_identity_and_flips_mirror_every_slice():
    np.testing.assert_array_equal(Augmenter(OFF, 16)(VOLUME), VOLUME)
    flip = OFF.model_copy(update={"horizontal_flip": 1.0, "vertical_flip": 1.0})
    np.testing.assert_array_equal(Augmenter(flip, 16)(VOLUME), VOLUME[:, ::-1, ::-1])


def test_volume_shift_and_affine_keep_the_shape_and_move_the_content():
    shift = OFF.model_copy(update={"crop": 1.0, "crop_min_area": 0.5})
    moved = [Augmenter(shift, 16, seed=s)(VOLUME) for s in range(4)]
    assert all(m.shape == VOLUME.shape and m.dtype == np.uint8 for m in moved)
    assert any(not np.array_equal(m, VOLUME) for m in moved)
    rotate = OFF.model_copy(update={"affine": 1.0, "rotate_degrees": 30})
    turned = Augmenter(rotate, 16, seed=1)(VOLUME)
    assert turned.shape == VOLUME.shape and not np.array_equal(turned, VOLUME)


def test_volumes_are_seeded_and_picklable():
    a, b = Augmenter(AugmentConfig(), 16, seed=5), pickle.loads(pickle.dumps(Augmenter(AugmentConfig(), 16, seed=5)))
    for _ in range(4):
        np.testing.assert_array_equal(a(VOLUME), b(VOLUME))
