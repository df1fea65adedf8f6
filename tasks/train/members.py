"""Ray Train driver for one ensemble member: TorchTrainer with DDP over ``workers`` workers,
a checkpoint every epoch into the run's storage, and resumption after a worker failure."""

from __future__ import annotations

import io
import os
import tempfile
import time
from collections.abc import Callable

import numpy as np
import ray
import ray.train
import torch
import torch.distributed as torch_dist
from pydantic import BaseModel, Field
from ray.train import Checkpoint, CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer, prepare_model

from tasks.core import storage
from tasks.core.cluster import cluster_address, ensure_ray, wait_any
from tasks.data.samples import Streamed
from tasks.model import store as model_store
from tasks.model.config import EnsembleConfig, MemberPlan, TrainConfig
from tasks.model.folders import RunFolder
from tasks.model.store import MemberRecord
from tasks.train.loop import Distributed, Scored, fit

CHECKPOINT_FILE = "state.pt"


class RayDistributed(Distributed):
    """DDP through Ray Train: model wrapped, predictions gathered from every worker (each reads its own share)."""

    def __init__(self) -> None:
        self.rank = ray.train.get_context().get_world_rank()
        self.world = ray.train.get_context().get_world_size()

    def wrap_model(self, model):
        return prepare_model(model) if self.world > 1 else model

    def gather(self, scored: Scored) -> Scored:
        if self.world == 1:
            return scored
        parts = self.all_objects(scored)
        return Scored(np.concatenate([p.probs for p in parts]), np.concatenate([p.labels for p in parts]))

    def all_objects(self, value) -> list:
        """``value`` from every worker, in rank order."""
        if self.world == 1:
            return [value]
        parts: list = [None] * self.world
        torch_dist.all_gather_object(parts, value)
        return parts

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


class TrainJob(BaseModel):
    """What every Ray Train worker of one member is handed."""

    config: TrainConfig
    dataset: str
    version: int | None = None
    classes: list[str]
    run_folder: str = Field(description="this member's checkpoint folder (path or s3://)")
    bagging: bool = False
    cpus_per_worker: int = 1


class TrainSummary(BaseModel):
    """What ``medflow train`` produced: the run, its dataset version and classes, each member's record."""

    run: str
    dataset_version: int
    classes: list[str]
    members: list[MemberRecord]


def worker_loop(loop_config: dict) -> None:
    """Runs on every Ray Train worker; ``loop_config["job"]`` is the member's ``TrainJob``."""
    job = TrainJob.model_validate(loop_config["job"])
    config = job.config
    if not config.num_threads:
        torch.set_num_threads(job.cpus_per_worker)
    classes, uri, version = job.classes, job.dataset, job.version
    # streamed from the dataset's Parquet row groups, each rank its own share; bagging: a bootstrap
    # resample of the training split drawn from the member's seed
    train = Streamed(uri, "train", classes, version, bagging_seed=config.seed if job.bagging else None,
                     shuffle_buffer=config.shuffle_buffer)
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
        metrics = {**metrics, "resumed_from": -1 if resume is None else resume["epoch"], "worker_nodes": nodes}
        with tempfile.TemporaryDirectory() as folder:
            if dist.rank == 0:  # one copy of the checkpoint; every worker reports the metrics
                torch.save(state, os.path.join(folder, CHECKPOINT_FILE))
                ray.train.report(metrics, checkpoint=Checkpoint.from_directory(folder))
            else:
                ray.train.report(metrics)

    fit(config, train, val, num_classes=len(classes),
        device=ray.train.torch.get_device(), on_epoch_end=report, resume=resume, distributed=dist)


def gpus_available() -> bool:
    """Whether the Ray cluster (not this driver) has GPUs: ``use_gpu`` auto."""
    return ray.cluster_resources().get("GPU", 0) > 0


def train_member(dataset_uri: str, storage_path: str, name: str, config: TrainConfig, classes: list[str],
                 workers: int = 1, version: int | None = None, max_failures: int = 2, bagging: bool = False,
                 cpus_per_worker: int = 1, placement_strategy: str = "PACK") -> ray.train.Result:
    """Train one member on Ray; checkpoints go to ``storage_path/name`` (a path or ``s3://``)."""
    # Ray Train's Prometheus metrics need the dashboard (off by default here) and cost CPU beside
    # training; RAY_TRAIN_METRICS_ENABLED=1 turns them back on
    os.environ.setdefault("RAY_TRAIN_METRICS_ENABLED", "0")
    use_gpu = gpus_available()
    trainer = TorchTrainer(
        worker_loop,
        train_loop_config={"job": TrainJob(config=config, dataset=dataset_uri, version=version, classes=classes,
                                           run_folder=storage.join(storage_path, name), bagging=bagging,
                                           cpus_per_worker=cpus_per_worker).model_dump()},
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu, placement_strategy=placement_strategy,
                                     resources_per_worker={"CPU": cpus_per_worker, **({"GPU": 1} if use_gpu else {})}),
        run_config=RunConfig(name=name, storage_path=storage_path,
                             failure_config=FailureConfig(max_failures=max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=2)),
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


@ray.remote(num_cpus=0)
def _train_and_export(dataset_uri: str, version: int | None, run_uri: str, plan: MemberPlan, config: EnsembleConfig,
                      classes: list[str]) -> MemberRecord:
    """One member, start to finish: Ray Train run, then its best weights and record into the model folder."""
    started = time.time()
    run = RunFolder(run_uri)
    result = train_member(dataset_uri, run.checkpoints, plan.name, config.member_config(plan),
                          classes, workers=config.workers, version=version, max_failures=config.max_failures,
                          bagging=config.bagging, cpus_per_worker=config.cpus_per_worker,
                          placement_strategy=config.placement_strategy)
    if result.error is not None:
        raise result.error
    metrics = result.metrics or {}
    state = checkpoint_state(result, run.checkpoint(plan.name))
    model_store.save_weights(run.model.weights(plan.name), state["best_model"])
    record = MemberRecord(**plan.model_dump(), best_val_auc=float(state["best_auc"]), epochs_run=len(state["history"]),
                          history=state["history"], resumed_from=metrics.get("resumed_from", state["epoch"]),
                          worker_nodes=metrics.get("worker_nodes", []), started=started, finished=time.time())
    model_store.save_record(run.model.uri, record)  # written last: the member is done
    return record


class ClusterTooSmallError(ValueError):
    """A member asks for more CPUs or GPUs than the local Ray has: it would wait forever."""


def check_room(config: EnsembleConfig) -> None:
    """Refuse, before anything starts, a member that a local Ray can never place. On a cluster
    (``RAY_ADDRESS``) an autoscaler may add nodes, so there the member waits instead."""
    if cluster_address():
        return
    have = ray.cluster_resources()
    need = {"CPUs (workers x cpus_per_worker)": ("CPU", config.workers * config.cpus_per_worker)}
    if gpus_available():
        need["GPUs (one per worker)"] = ("GPU", config.workers)
    for what, (resource, amount) in need.items():
        if amount > have.get(resource, 0):
            raise ClusterTooSmallError(f"a member needs {amount} {what} but the local Ray has {have.get(resource, 0):g}: "
                                       "lower --workers or cpus_per_worker, or set RAY_ADDRESS to a cluster with room")


def train_members(dataset_uri: str, version: int | None, run_uri: str, config: EnsembleConfig, classes: list[str],
                  on_done: Callable[[MemberRecord], None] | None = None) -> list[MemberRecord]:
    """Train every member not finished yet, concurrently as far as the cluster has room (each member
    asks for ``workers`` x ``cpus_per_worker`` CPUs; Ray queues the rest). Returns all members' records."""
    ensure_ray()
    check_room(config)
    records: dict[str, MemberRecord] = {}
    pending = {}
    for plan in config.plans():
        model = RunFolder(run_uri).model
        if storage.exists(model.record(plan.name)):  # finished by an earlier attempt of this run
            records[plan.name] = model_store.load_record(model.uri, plan.name)
            continue
        pending[_train_and_export.remote(dataset_uri, version, run_uri, plan, config, classes)] = plan.name
    while pending:
        done = wait_any(list(pending))
        name = pending.pop(done)
        records[name] = ray.get(done)
        if on_done is not None:
            on_done(records[name])
    return [records[plan.name] for plan in config.plans()]
