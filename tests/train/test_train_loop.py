"""The per-worker loop without Ray: it learns the synthetic task, stops early, and resumes."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from medflow import synthetic
from tasks.data.samples import InMemory
from tasks.model.config import AugmentConfig, TrainConfig
from tasks.train.loop import class_weights, fit

SIZE = 32


def lesion_set(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.4).astype(np.int64)
    images = np.stack([np.rint(synthetic.lesion_image(rng, SIZE, bool(y)) * 255).astype(np.uint8) for y in labels])
    return images, labels


@pytest.fixture(scope="module")
def data():
    return InMemory(*lesion_set(384, 0)), InMemory(*lesion_set(128, 1))


FAST = TrainConfig(model="seed_cnn", epochs=6, batch_size=32, learning_rate=3e-3, seed=0, augment=AugmentConfig(affine=0.3, crop=0))


def test_learns_the_synthetic_task(data):
    torch.set_num_threads(2)
    result = fit(FAST, *data, num_classes=2)
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < 0.7 * losses[0]
    assert result.best_auc > 0.9


def test_resume_continues_after_the_checkpointed_epoch(data):
    saved = {}

    def crash_after_epoch_1(epoch, metrics, checkpoint):
        saved[epoch] = checkpoint
        if epoch == 1:
            raise KeyboardInterrupt("worker killed")

    config = FAST.model_copy(update={"epochs": 4})
    with pytest.raises(KeyboardInterrupt):
        fit(config, *data, num_classes=2, on_epoch_end=crash_after_epoch_1)
    resumed = fit(config, *data, num_classes=2, resume=saved[1])
    assert resumed.epochs_run == [2, 3]
    assert resumed.best_auc >= saved[1]["best_auc"]


def test_class_weights():
    weights = class_weights(np.array([0, 0, 0, 1]), 2)
    assert weights[1] > weights[0] and abs(float(weights.mean()) - 1) < 1e-6


def test_validation_without_a_class_stops_on_loss(data):
    """Three classes, the third absent from validation: AUC is undefined, so the best epoch is the
    one with the lowest validation loss (no crash in scikit-learn)."""
    train, val = data
    labels = train.labels.copy()
    labels[np.arange(len(labels)) % 7 == 0] = 2
    result = fit(FAST.model_copy(update={"epochs": 3}), InMemory(train.images_, labels), val, num_classes=3)
    assert len(result.history) == 3 and all(np.isnan(h["val_auc"]) for h in result.history)
    assert result.best_state is not None
    assert result.best_loss == min(h["val_loss"] for h in result.history)


def test_the_gpu_throughput_benchmark_runs_without_ray_prefect_or_deltalake():
    """The GPU machine has torch but not Ray, Prefect or deltalake: the per-worker loop must not need them."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    blocked = ["ray", "prefect", "deltalake", "s3fs", "boto3", "moto"]
    code = (f"import runpy, sys; sys.modules.update(dict.fromkeys({blocked!r}));"
            "sys.argv = ['train.py', '--throughput', '--size', '32', '--batch', '8', '--steps', '2', '--loader-workers', '0'];"
            "runpy.run_path('benchmarks/train.py', run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "compute only" in done.stdout and "img/s" in done.stdout
