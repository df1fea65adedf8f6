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
from tasks.model.architectures import build_model
from tasks.model.config import AugmentConfig, TrainConfig
from tasks.train.loop import class_weights, fit
from tasks.train.weights import average_decay, load_initial_weights

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
        fit(config, *data, num_classes=2, on_check=crash_after_epoch_1)
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
    result = fit(FAST.model_copy(update={"epochs": 3, "smoothing": 1}), InMemory(train.images_, labels), val, num_classes=3)
    assert len(result.history) == 3 and all(np.isnan(h["val_auc"]) for h in result.history)
    assert result.best_state is not None
    assert result.best_loss == min(h["val_loss"] for h in result.history)


def test_the_gpu_benchmark_runs_without_ray_prefect_deltalake_or_the_dicom_writer():
    """The GPU machine has torch but not Ray, Prefect, deltalake or imagecodecs: the per-worker loop's
    throughput and ``fit`` (2-D and 3-D) must not need them (DDP's ranks are tested in test_distributed)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    blocked = ["ray", "prefect", "deltalake", "s3fs", "boto3", "moto", "imagecodecs"]
    argv = ["gpu.py", "--quick", "--parts", "throughput,fit"]
    code = (f"import runpy, sys; sys.modules.update(dict.fromkeys({blocked!r})); sys.argv = {argv!r};"
            "runpy.run_path('benchmarks/gpu.py', run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("default arithmetic / float32") == 2 and "volumes" in done.stdout  # 2-D and 3-D
    assert "fit 2-D" in done.stdout and "fit 3-D" in done.stdout and done.stdout.count("stopped completed") == 2


def test_a_run_sized_in_steps_checks_a_few_times_and_keeps_the_averaged_weights(data):
    config = FAST.model_copy(update={"epochs": None, "steps": 60, "checks": 3})
    result = fit(config, *data, num_classes=2)
    assert result.length.sized_by == "steps" and result.length.steps >= 60
    assert len(result.history) == result.length.checks == 3
    assert [h["steps"] for h in result.history] == [result.length.steps_per_epoch * (h["epoch"] + 1) for h in result.history]
    assert result.history[-1]["learning_rate"] < 0.01 * config.learning_rate  # the schedule ended with the run
    plain = fit(config.model_copy(update={"weight_averaging": "none"}), *data, num_classes=2)
    some = next(k for k, v in result.best_state.items() if v.dtype.is_floating_point)
    assert not torch.equal(result.best_state[some], plain.best_state[some])  # the average, not the last weights


def test_the_weight_average_forgets_at_the_pace_of_the_run(data):
    """The default decay gives the average a time constant of ``ema_window`` of the planned steps:
    about 0.998 for the full PneumoniaMNIST run (4440 steps), shorter for a shorter run; an explicit
    ``ema_decay`` wins, and ``fit`` averages with the decay the run's length gives."""
    default = TrainConfig()
    assert abs(average_decay(default, 4440) - 0.998) < 1e-4
    assert average_decay(default, 1500) < average_decay(default, 4440) < 1
    assert abs(1 / (1 - average_decay(default, 1500)) - default.ema_window * 1500) < 1e-6
    assert average_decay(default.model_copy(update={"ema_decay": 0.99}), 1500) == 0.99
    assert average_decay(default.model_copy(update={"weight_averaging": "none"}), 1500) is None
    config = FAST.model_copy(update={"epochs": None, "steps": 36, "checks": 2})
    derived = fit(config, *data, num_classes=2)
    pinned = fit(config.model_copy(update={"ema_decay": average_decay(config, derived.length.steps)}), *data, num_classes=2)
    other = fit(config.model_copy(update={"ema_decay": 0.998}), *data, num_classes=2)
    assert all(torch.equal(derived.best_state[k], pinned.best_state[k]) for k in derived.best_state)
    assert not all(torch.equal(derived.best_state[k], other.best_state[k]) for k in derived.best_state)


def test_the_same_seed_gives_the_same_weights_and_another_seed_does_not(data):
    config = FAST.model_copy(update={"epochs": 2})
    first, second = fit(config, *data, num_classes=2), fit(config, *data, num_classes=2)
    assert all(torch.equal(first.best_state[k], second.best_state[k]) for k in first.best_state)
    other = fit(config.model_copy(update={"seed": 1}), *data, num_classes=2)
    assert not all(torch.equal(first.best_state[k], other.best_state[k]) for k in first.best_state)


def test_a_passed_deadline_stops_at_the_next_check(data):
    import time

    result = fit(FAST.model_copy(update={"epochs": 5}), *data, num_classes=2, deadline=time.time() - 1)
    assert result.stopped == "deadline" and len(result.history) == 1 and result.best_state is not None


def test_init_weights_start_a_member_from_a_local_state_dict(data, tmp_path):
    trained = fit(FAST.model_copy(update={"epochs": 3}), *data, num_classes=2)
    path = tmp_path / "backbone.pt"
    torch.save({k: v for k, v in trained.best_state.items() if not k.startswith("head")}, path)  # no class head
    model = build_model("seed_cnn", 2, SIZE)
    load_initial_weights(model, str(path))
    state = model.state_dict()
    assert all(torch.equal(state[k], trained.best_state[k]) for k in state if not k.startswith("head"))
    assert not torch.equal(state["head.1.weight"], trained.best_state["head.1.weight"])  # not in the file: as initialised
    warm = fit(FAST.model_copy(update={"epochs": 1, "init_weights": str(path)}), *data, num_classes=2)
    cold = fit(FAST.model_copy(update={"epochs": 1}), *data, num_classes=2)
    assert warm.history[0]["train_loss"] < cold.history[0]["train_loss"]
    torch.save({"unrelated.weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="no tensor matches"):
        fit(FAST.model_copy(update={"init_weights": str(tmp_path / "other.pt")}), *data, num_classes=2)


def test_a_diverged_member_says_so_instead_of_failing_in_the_metrics(data):
    with pytest.raises(FloatingPointError, match="seed_cnn: the validation outputs are not finite after epoch 1"):
        fit(FAST.model_copy(update={"learning_rate": 1e12, "epochs": 1, "weight_decay": 0.0}), *data, num_classes=2)
