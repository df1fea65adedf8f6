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


CUBE = np.random.default_rng(1).integers(1, 256, (8, 8, 8), dtype=np.uint8)  # no zero voxel: dropout is visible


def _symmetries_of_the_cube(cube: np.ndarray) -> list[np.ndarray]:
    from itertools import permutations, product

    return [np.flip(cube.transpose(order), [a for a, f in enumerate(flips) if f])
            for order in permutations(range(3)) for flips in product((False, True), repeat=3)]


def test_symmetry_is_one_of_the_squares_8_or_the_cubes_48():
    square = OFF.model_copy(update={"symmetry": 1.0})
    image = RAMP_8BIT[:16, :16]
    turns = [np.rot90(f, k) for f in (image, image.T) for k in range(4)]
    images = [Augmenter(square, 16, seed=s)(image) for s in range(12)]
    assert all(any(np.array_equal(out, t) for t in turns) for out in images)
    assert len({out.tobytes() for out in images}) > 2
    cubes = _symmetries_of_the_cube(CUBE)
    assert len({c.tobytes() for c in cubes}) == 48
    volumes = [Augmenter(square, 8, seed=s)(CUBE) for s in range(12)]
    assert all(any(np.array_equal(out, c) for c in cubes) for out in volumes)
    assert len({out.tobytes() for out in volumes}) > 2


def test_coarse_dropout_blanks_boxes_of_images_and_volumes():
    dropout = OFF.model_copy(update={"coarse_dropout": 1.0, "dropout_size": 0.5})
    volume = Augmenter(dropout, 8, seed=3)(CUBE)
    blank = volume == 0
    assert blank.any() and not blank.all() and np.array_equal(volume[~blank], CUBE[~blank])
    zs, ys, xs = np.nonzero(blank)  # one box at least spans more than a voxel on every axis
    assert min(zs.max() - zs.min(), ys.max() - ys.min(), xs.max() - xs.min()) >= 1
    image = Augmenter(dropout, 16, seed=3)(CUBE[0].repeat(2, 0).repeat(2, 1))
    assert (image == 0).any() and not (image == 0).all()
