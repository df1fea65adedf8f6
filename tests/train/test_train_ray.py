"""Ray Train with real workers: 2 CPU workers (DDP over gloo) learn the synthetic task, checkpoint
every check into the run's storage, and a worker killed mid-training resumes from a checkpoint."""

from __future__ import annotations

import glob
import os
import signal
import threading
import time

import pytest

from tasks.core import storage
from tasks.model import runs
from tasks.model.config import AugmentConfig, EnsembleConfig, TrainConfig
from tasks.train.allocator import TRAINING_MALLOC
from tasks.train.budget import run_length
from tasks.train.members import ClusterTooSmallError, check_room, train_members
from tasks.train.worker import TrainJob, train_member
from tests.conftest import environment, ray_processes
from tests.corpora import ingested_corpus

CLASSES = ["abnormal", "normal"]
CONFIG = TrainConfig(model="seed_cnn", epochs=4, batch_size=32, learning_rate=3e-3, early_stopping_patience=10,
                     augment=AugmentConfig(affine=0.3, crop=0), num_threads=1)


def job(uri: str, storage_path: str, name: str, config: TrainConfig) -> TrainJob:
    return TrainJob(config=config, length=run_length(config, 1), dataset=uri, classes=CLASSES,
                    run_folder=os.path.join(storage_path, name))


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory, ray_local):
    root = tmp_path_factory.mktemp("train")
    _, uri = ingested_corpus(root, 60, 4, (0.7, 0.25, 0.05))
    return root, uri


def _watch_worker_environments(found: dict[int, dict[str, str]], stop: threading.Event) -> None:
    """The malloc settings in each Ray Train worker's environment, read while the workers run."""
    while not stop.is_set():
        for pid in ray_processes("RayTrainWorker"):
            if (variables := environment(pid)) is not None:  # None: it exited meanwhile
                found[pid] = {k: v for k, v in variables.items() if k in TRAINING_MALLOC}
        time.sleep(0.2)


def test_two_workers_learn_and_checkpoint_every_epoch(small_dataset):
    root, uri = small_dataset
    environments: dict[int, dict[str, str]] = {}
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_worker_environments, args=(environments, stop))
    watcher.start()
    try:
        result = train_member(job(uri, str(root / "runs"), "member-0", CONFIG), str(root / "runs"), "member-0",
                              workers=2)
    finally:
        stop.set()
        watcher.join()
    assert len(environments) >= 2 and all(env == TRAINING_MALLOC for env in environments.values())
    assert result.error is None
    assert result.metrics["val_auc"] > 0.8
    assert result.metrics["epoch"] == CONFIG.epochs - 1 and result.metrics["resumed_from"] == -1
    assert result.checkpoint is not None
    assert glob.glob(str(root / "runs" / "member-0" / "**" / "state.pt"), recursive=True)


def _kill_a_worker_after_two_checkpoints(folder: str, killed: list[int], stop: threading.Event) -> None:
    while not stop.is_set():
        # two checkpoints on storage: the first one is complete
        if len(glob.glob(os.path.join(folder, "**", "state.pt"), recursive=True)) >= 2:
            pids = ray_processes("RayTrainWorker")
            if pids:
                os.kill(pids[-1], signal.SIGKILL)
                killed.append(pids[-1])
                return
        time.sleep(0.05)


def test_a_killed_worker_resumes_from_its_checkpoint(small_dataset):
    root, uri = small_dataset
    folder = str(root / "runs" / "member-killed")
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=_kill_a_worker_after_two_checkpoints, args=(folder, killed, stop))
    killer.start()
    config = CONFIG.model_copy(update={"epochs": 6})
    result = train_member(job(uri, str(root / "runs"), "member-killed", config), str(root / "runs"), "member-killed", workers=2)
    stop.set()
    killer.join()
    assert killed, "no worker was killed"
    assert result.error is None
    assert result.metrics["epoch"] == config.epochs - 1
    assert result.metrics["resumed_from"] >= 0  # the restarted workers continued after a checkpoint, not from scratch



def test_rerun_after_the_driver_died_before_export_finishes_the_member(small_dataset):
    """The member's last epoch is checkpointed but its weights were never exported: `medflow train`
    rerun with the same --run resumes it (nothing left to train) and exports the checkpointed best."""
    root, uri = small_dataset
    run = str(root / "rerun")
    config = EnsembleConfig(members=1, architectures=["seed_cnn"], train=CONFIG.model_copy(update={"epochs": 2}))
    info = runs.prepare(run, uri, None, config, None)
    plan = config.plans()[0]
    checkpoints_path = os.path.join(run, "checkpoints")
    first = train_member(job(uri, checkpoints_path, plan.name, config.member_config(plan)), checkpoints_path, plan.name)
    assert first.error is None and not os.path.exists(os.path.join(run, "model"))  # "crash": nothing exported
    checkpoints = sorted(glob.glob(os.path.join(run, "checkpoints", "member-0", "checkpoint_*")))
    [record] = train_members(info, config).members
    assert record.epochs_run == 2 and record.resumed_from == 1  # the history of the first attempt...
    assert sorted(glob.glob(os.path.join(run, "checkpoints", "member-0", "checkpoint_*"))) == checkpoints  # ...no epoch retrained
    assert record.best_val_auc in [h["val_auc_smoothed"] for h in record.history]  # a check of the first attempt
    assert os.path.exists(os.path.join(run, "model", "members", "member-0.pt"))
    assert storage.read_json(os.path.join(run, "model", "members", "member-0.json"))["name"] == "member-0"


def test_a_member_larger_than_the_local_ray_is_refused_before_anything_starts(ray_local):
    config = EnsembleConfig(workers=3)  # 3 CPUs; the local Ray has 2: it would wait forever
    info = runs.RunInfo(run="/nonexistent/run", dataset="/nonexistent/dataset", version=0, classes=["a", "b"], image_size=32)
    with pytest.raises(ClusterTooSmallError, match="needs 3 CPUs .* local Ray has 2"):
        train_members(info, config)
    check_room(EnsembleConfig(workers=2))  # fits
