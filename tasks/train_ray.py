"""Ray Train driver for one ensemble member: TorchTrainer with DDP over ``workers`` workers,
a checkpoint every epoch into the run's storage, and resumption after a worker failure."""

from __future__ import annotations

import io
import os
import tempfile

import numpy as np
import ray.train
import torch
import torch.distributed as torch_dist
from ray.train import Checkpoint, CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer, prepare_data_loader, prepare_model

from tasks import dataset, storage
from tasks.train_loop import Distributed, TrainConfig, fit

CHECKPOINT_FILE = "state.pt"


def load_split(uri: str, split: str, classes: list[str], version: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """uint8 N x H x W images and class indices of one split of a dataset version."""
    table = dataset.read_version(uri, version, columns=["pixels", "height", "width", "label", "split"])
    rows = [r for r in table.to_pylist() if r["split"] == split]
    if not rows:
        return np.zeros((0, 1, 1), np.uint8), np.zeros(0, np.int64)
    h, w = rows[0]["height"], rows[0]["width"]
    images = np.stack([np.frombuffer(r["pixels"], np.uint8).reshape(h, w) for r in rows])
    return images, np.array([classes.index(r["label"]) for r in rows], dtype=np.int64)


class RayDistributed(Distributed):
    """DDP through Ray Train: model wrapped, loaders sharded, predictions gathered from every worker."""

    def __init__(self) -> None:
        self.rank = ray.train.get_context().get_world_rank()
        self.world = ray.train.get_context().get_world_size()

    def wrap_model(self, model):
        return prepare_model(model) if self.world > 1 else model

    def prepare_loader(self, loader):
        return prepare_data_loader(loader, move_to_device=False) if self.world > 1 else loader

    def gather(self, probs, labels):
        if self.world == 1:
            return probs, labels
        parts: list = [None] * self.world
        torch_dist.all_gather_object(parts, (probs, labels))
        return np.concatenate([p for p, _ in parts]), np.concatenate([y for _, y in parts])

    def mean(self, value):
        if self.world == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64)
        torch_dist.all_reduce(tensor)
        return float(tensor) / self.world


def latest_checkpoint(run_folder: str) -> dict | None:
    """The newest readable checkpoint state below ``run_folder`` (a path or ``s3://``), or None.

    Ray Train names checkpoint folders ``checkpoint_<timestamp>``, so names sort by age; one cut
    short by a crash fails to load and the one before it is used.
    """
    fs = storage.filesystem(run_folder)
    base = storage.strip_protocol(run_folder)
    if not fs.exists(base):
        return None
    folders = sorted((p for p in fs.ls(base, detail=False) if os.path.basename(p).startswith("checkpoint_")), reverse=True)
    for folder in folders:
        try:
            with fs.open(f"{folder}/{CHECKPOINT_FILE}", "rb") as f:
                return torch.load(io.BytesIO(f.read()), weights_only=True)
        except Exception:  # missing or partial file: try the previous checkpoint
            continue
    return None


def worker_loop(loop_config: dict) -> None:
    """Runs on every Ray Train worker."""
    config = TrainConfig(**loop_config["config"])
    classes = loop_config["classes"]
    train = load_split(loop_config["dataset"], "train", classes, loop_config.get("version"))
    val = load_split(loop_config["dataset"], "val", classes, loop_config.get("version"))
    resume = None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as folder:
            resume = torch.load(os.path.join(folder, CHECKPOINT_FILE), weights_only=True)
    else:  # restarted after a failure, or rerun with the same run: continue, not epoch 1
        resume = latest_checkpoint(loop_config["run_folder"])
    dist = RayDistributed()

    def report(epoch: int, metrics: dict, state: dict) -> None:
        metrics = {**metrics, "resumed_from": -1 if resume is None else resume["epoch"]}
        with tempfile.TemporaryDirectory() as folder:
            if dist.rank == 0:  # one copy of the checkpoint; every worker reports the metrics
                torch.save(state, os.path.join(folder, CHECKPOINT_FILE))
                ray.train.report(metrics, checkpoint=Checkpoint.from_directory(folder))
            else:
                ray.train.report(metrics)

    fit(config, *train, *val, num_classes=len(classes), device=ray.train.torch.get_device(),
        on_epoch_end=report, resume=resume, distributed=dist)


def train_member(dataset_uri: str, storage_path: str, name: str, config: TrainConfig, classes: list[str],
                 workers: int = 1, version: int | None = None, max_failures: int = 2) -> ray.train.Result:
    """Train one member on Ray; checkpoints go to ``storage_path/name`` (a path or ``s3://``)."""
    trainer = TorchTrainer(
        worker_loop,
        train_loop_config={"config": config.model_dump(), "dataset": dataset_uri, "version": version,
                           "classes": classes, "run_folder": storage.join(storage_path, name)},
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=torch.cuda.is_available()),
        run_config=RunConfig(name=name, storage_path=storage_path,
                             failure_config=FailureConfig(max_failures=max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=2)),
    )
    return trainer.fit()
