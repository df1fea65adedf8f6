"""Ray Train driver for one ensemble member: TorchTrainer with DDP over ``workers`` workers,
a checkpoint at every validation check into the run's storage, and resumption after a worker failure."""

from __future__ import annotations

import io
import os
import tempfile
import uuid
from collections.abc import Callable
from functools import partial

import numpy as np
import ray
import ray.train
import torch
from pydantic import BaseModel, Field
from ray.train import Checkpoint, CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer, prepare_model

from tasks.core import storage
from tasks.data.samples import Streamed, bootstrap, weighted_resample
from tasks.model.config import TrainConfig
from tasks.train.allocator import training_runtime_env
from tasks.train.boosting import BoostingStep
from tasks.train.budget import RunLength
from tasks.train.distributed import ProcessGroup
from tasks.train.loop import fit

CHECKPOINT_FILE = "state.pt"


class RayDistributed(ProcessGroup):
    """DDP through Ray Train: its process group, its device, its model wrapping."""

    def __init__(self) -> None:
        context = ray.train.get_context()
        self.rank, self.world = context.get_world_rank(), context.get_world_size()
        self.device = ray.train.torch.get_device()

    def wrap_model(self, model):
        return prepare_model(model) if self.world > 1 else model


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


class TrainJob(BaseModel):
    """What every Ray Train worker of one member is handed."""

    config: TrainConfig
    length: RunLength = Field(description="the member's schedule, from the ensemble plan")
    deadline: float | None = Field(None, description="time.time() after which the member stops at its next check")
    dataset: str
    version: int | None = None
    classes: list[str]
    run_folder: str = Field(description="this member's checkpoint folder (path or s3://)")
    bagging: bool = False
    row_weights: str | None = Field(None, description="boosting: the previous member's BoostingStep (JSON URI)")
    cpus_per_worker: int = 1
    attempt: str = Field(default_factory=lambda: uuid.uuid4().hex,
                         description="marks this call's reports: a rerun of a run already trained to its end "
                                     "reports nothing, and Ray Train hands back the earlier call's metrics")


def worker_loop(loop_config: dict) -> None:
    """Runs on every Ray Train worker; ``loop_config["job"]`` is the member's ``TrainJob``."""
    job = TrainJob.model_validate(loop_config["job"])
    config = job.config
    if not config.num_threads:
        torch.set_num_threads(job.cpus_per_worker)
    classes, uri, version = job.classes, job.dataset, job.version
    # streamed from the dataset's Parquet row groups, each rank its own share
    train = Streamed(uri, "train", classes, version, resample=_resampling(job), shuffle_buffer=config.shuffle_buffer)
    val = Streamed(uri, "val", classes, version)
    resume = None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as folder:
            resume = torch.load(os.path.join(folder, CHECKPOINT_FILE), weights_only=True)
    else:  # restarted after a failure, or rerun with the same run: continue, not epoch 1
        resume = latest_checkpoint(job.run_folder)
    dist = RayDistributed()
    nodes = dist.all_objects(ray.get_runtime_context().get_node_id())  # where each rank runs, for the record

    def report(epoch: int, metrics: dict, state: dict) -> None:
        metrics = {**metrics, "resumed_from": -1 if resume is None else resume["epoch"], "worker_nodes": nodes,
                   "attempt": job.attempt}
        with tempfile.TemporaryDirectory() as folder:
            if dist.rank == 0:  # one copy of the checkpoint; every worker reports the metrics
                torch.save(state, os.path.join(folder, CHECKPOINT_FILE))
                ray.train.report(metrics, checkpoint=Checkpoint.from_directory(folder))
            else:
                ray.train.report(metrics)

    fit(config, train, val, num_classes=len(classes), device=ray.train.torch.get_device(), on_check=report,
        resume=resume, distributed=dist, length=job.length, deadline=job.deadline)


def _resampling(job: TrainJob) -> Callable[[int], np.ndarray] | None:
    """Bagging: a bootstrap resample drawn from the member's seed; boosting: a resample in
    proportion to the previous member's row weights; else the split as it is."""
    if job.row_weights:
        weights = np.asarray(BoostingStep.model_validate(storage.read_json(job.row_weights)).next_weights)
        return lambda n: weighted_resample(weights, job.config.seed)
    return partial(bootstrap, seed=job.config.seed) if job.bagging else None


def gpus_available() -> bool:
    """Whether the Ray cluster (not this driver) has GPUs: ``use_gpu`` auto."""
    return ray.cluster_resources().get("GPU", 0) > 0


def train_member(job: TrainJob, storage_path: str, name: str, workers: int = 1, max_failures: int = 2,
                 placement_strategy: str = "PACK") -> ray.train.Result:
    """Train one member on Ray (its workers started with the training malloc settings); checkpoints go
    to ``storage_path/name`` (a path or ``s3://``)."""
    # Ray Train's Prometheus metrics need the dashboard (off by default here) and cost CPU beside
    # training; RAY_TRAIN_METRICS_ENABLED=1 turns them back on
    os.environ.setdefault("RAY_TRAIN_METRICS_ENABLED", "0")
    use_gpu = gpus_available()
    trainer = TorchTrainer(
        worker_loop,
        train_loop_config={"job": job.model_dump()},
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu, placement_strategy=placement_strategy,
                                     resources_per_worker={"CPU": job.cpus_per_worker, **({"GPU": 1} if use_gpu else {})}),
        run_config=RunConfig(name=name, storage_path=storage_path,
                             failure_config=FailureConfig(max_failures=max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=2),
                             worker_runtime_env=training_runtime_env()),
    )
    return trainer.fit()


def checkpoint_state(result: ray.train.Result, run_folder: str) -> dict:
    """The state saved in a finished run's last checkpoint. A run resumed after its last epoch had
    been checkpointed (the driver died before exporting the member) reports none: then the newest
    checkpoint in the run folder is the final one."""
    if result.checkpoint is not None:
        with result.checkpoint.as_directory() as folder:
            return torch.load(os.path.join(folder, CHECKPOINT_FILE), weights_only=True)
    state = latest_checkpoint(run_folder)
    if state is None:
        raise RuntimeError(f"training reported no checkpoint and none is in {run_folder}")
    return state


