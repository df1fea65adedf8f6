"""benchmarks/candidates.py's inputs: a candidate's settings, and the small variant's draw of the
training split (the same rows as benchmarks/quality.py's PneumoniaMNIST-500)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.candidates import candidate, split
from benchmarks.quality import small_variant


def test_a_candidate_names_an_architecture_and_training_settings():
    assert candidate("seed_cnn") == ("seed_cnn", {})
    assert candidate("seed_cnn:learning_rate=0.004,seed=3,weight_averaging=none") == (
        "seed_cnn", {"learning_rate": 0.004, "seed": 3, "weight_averaging": "none"})


@pytest.mark.parametrize("draw", [5, 12])
def test_the_draw_takes_the_rows_the_quality_benchmarks_small_variant_takes(tmp_path, monkeypatch, draw):
    rng = np.random.default_rng(1)
    arrays = {f"{name}_{kind}": (rng.integers(0, 256, (n, 4, 4), dtype=np.uint8) if kind == "images"
                                 else rng.integers(0, 2, (n, 1)))
              for name, n in (("train", 30), ("val", 7), ("test", 9)) for kind in ("images", "labels")}
    np.savez(tmp_path / "data.npz", **arrays)
    monkeypatch.setattr("benchmarks.quality.SMALL_TRAIN", draw)
    images = np.concatenate([arrays[f"{s}_images"] for s in ("train", "val", "test")])
    labels = np.concatenate([arrays[f"{s}_labels"].ravel() for s in ("train", "val", "test")])
    splits = ["train"] * 30 + ["val"] * 7 + ["test"] * 9
    small_images, small_labels, small_splits = small_variant(images, labels, splits)
    train = np.array(small_splits) == "train"
    drawn = split(str(tmp_path / "data.npz"), "train", None, draw)
    assert len(drawn) == draw and (drawn.images_ == small_images[train]).all() and (drawn.labels == small_labels[train]).all()
    assert len(split(str(tmp_path / "data.npz"), "val", None, draw)) == 7  # only the training split is drawn from
