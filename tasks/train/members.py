"""The ensemble on Ray: the plan (members and schedules sized to the budget and the cluster), then
every member trained (concurrently where there is room; in sequence when boosting) and exported."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import numpy as np
import ray
import torch
from pydantic import BaseModel, Field

from tasks.core import storage
from tasks.core.cluster import cluster_address, ensure_ray, get_all, wait_any
from tasks.data.dataset import read_version
from tasks.data.samples import Share, Streamed, steps_per_epoch
from tasks.model import store as model_store
from tasks.model.architectures import build_model
from tasks.model.config import AugmentConfig, EnsembleConfig, MemberPlan, Precision
from tasks.model.folders import RunFolder
from tasks.model.runs import RunInfo
from tasks.model.store import MemberRecord
from tasks.train.allocator import training_runtime_env
from tasks.train.boosting import BoostingStep, samme_step, uniform
from tasks.train.loop import predict_proba
from tasks.train.planning import EnsemblePlan, measure_augment_seconds, measure_seconds_per_step, plan_ensemble
from tasks.train.pretrain import simclr
from tasks.train.weights import average_decay
from tasks.train.worker import TrainJob, checkpoint_state, gpus_available, train_member


class TrainSummary(BaseModel):
    """What ``medflow train`` produced: the run, its dataset version and classes, the plan, each member's record."""

    run: str
    dataset_version: int
    classes: list[str]
    plan: EnsemblePlan
    members: list[MemberRecord]
    seconds: float = Field(0.0, description="training wall time of this attempt")

    def markdown(self) -> str:
        """The plan and what it spent, one row per member (the ``train-summary`` artifact)."""
        plan = self.plan
        budget = f" of a {plan.budget_seconds / 60:.0f}-minute budget" if plan.budget_seconds else ""
        rows = "\n".join(f"| {m.name} | {m.architecture} | {m.seed} | {m.steps_run} / {m.planned_steps} | {m.epochs_run} "
                         f"| {m.stopped} | {m.precision} | {m.best_val_auc:.4f} |" for m in self.members)
        return (f"# Training: dataset v{self.dataset_version}\n\n{len(self.members)} members, {plan.slots} at a time, "
                f"{self.seconds / 60:.1f} minutes{budget} (sized by {plan.sized_by})\n\n"
                "| member | architecture | seed | steps run / planned | epochs | stopped | precision | smoothed val AUC |\n"
                f"|---|---|---|---|---|---|---|---|\n{rows}\n")


def _boost(info: RunInfo, plan: MemberPlan, state: dict, row_weights: str | None) -> BoostingStep:
    """This member's SAMME step: its errors on the (unresampled) training split, in index order."""
    train = Streamed(info.dataset, "train", info.classes, info.version)
    model = build_model(plan.architecture, len(info.classes), train.image_size, train.dims)
    model.load_state_dict(state)
    scored = predict_proba(model, train.loader(Share(0, 0, 1, False), 256, plan.seed), torch.device("cpu"))
    weights = np.asarray(BoostingStep.model_validate(storage.read_json(row_weights)).next_weights) if row_weights \
        else uniform(len(train))
    return samme_step(weights, scored.probs.argmax(axis=1) != scored.labels, len(info.classes))


@ray.remote(num_cpus=0)
def _train_and_export(info: RunInfo, plan: MemberPlan, config: EnsembleConfig, ensemble: EnsemblePlan,
                      deadline: float | None, row_weights: str | None) -> MemberRecord:
    """One member, start to finish: Ray Train run, then its best weights and record into the model folder
    (boosting: also the row weights the next member trains on)."""
    started = time.time()
    run = RunFolder(info.run)
    length = ensemble.lengths[plan.name]
    member = config.member_config(plan)
    if config.pretrain.enabled:  # fine-tune from this architecture's self-supervised weights
        member = member.model_copy(update={"init_weights": run.pretrained(plan.architecture)})
    job = TrainJob(config=member, length=length, deadline=deadline, dataset=info.dataset,
                   version=info.version, classes=info.classes, run_folder=run.checkpoint(plan.name),
                   bagging=config.bagging, row_weights=row_weights, cpus_per_worker=config.cpus_per_worker)
    result = train_member(job, run.checkpoints, plan.name, workers=config.workers, max_failures=config.max_failures,
                          placement_strategy=config.placement_strategy)
    if result.error is not None:
        raise result.error
    metrics = result.metrics or {}
    state = checkpoint_state(result, run.checkpoint(plan.name))
    if metrics.get("attempt") != job.attempt:  # nothing left to train: this call resumed from the last checkpoint
        metrics = {**metrics, "resumed_from": state["epoch"]}
    model_store.save_weights(run.model.weights(plan.name), state["best_model"])
    boosting_weight = None
    if config.boosting:
        step = _boost(info, plan, state["best_model"], row_weights)
        storage.write_json(run.boosting(plan.name), step.model_dump())
        boosting_weight = step.weight
    history = state["history"]
    record = MemberRecord(**plan.model_dump(), best_val_auc=float(state["best_auc"]),
                          epochs_run=history[-1]["epoch"] + 1 if history else 0,
                          steps_run=history[-1]["steps"] if history else 0, planned_steps=length.steps,
                          ema_decay=average_decay(member, length.steps),
                          precision=history[-1].get("precision", "float32") if history else "float32",
                          stopped=state.get("stopped", "completed"), history=history,
                          resumed_from=metrics["resumed_from"], boosting_weight=boosting_weight,
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


def slots(config: EnsembleConfig) -> int:
    """How many members the cluster trains at once now: each needs workers x cpus_per_worker CPUs
    (and a GPU per worker where there are GPUs)."""
    have = ray.cluster_resources()
    room = int(have.get("CPU", 1) // (config.workers * config.cpus_per_worker))
    if gpus_available():
        room = min(room, int(have.get("GPU", 0) // config.workers))
    return max(1, room)


@ray.remote
def _pretrain(info: RunInfo, architecture: str, config: EnsembleConfig) -> None:
    """One architecture's self-supervised weights (and its losses) into the run folder."""
    # no torch global here: cloudpickle would take the name "classes" (info.classes) for the
    # submodule torch.classes, which cannot be pickled
    images = Streamed(info.dataset, None, info.classes, info.version, shuffle_buffer=config.train.shuffle_buffer)
    started = time.time()
    state, losses = simclr(architecture, images, config.pretrain, config.seed, threads=config.cpus_per_worker)
    run = RunFolder(info.run)
    model_store.save_weights(run.pretrained(architecture), state)
    storage.write_json(run.pretrained_record(architecture), {"images": len(images), "steps": config.pretrain.steps,
                                                             "losses": losses, "seconds": time.time() - started})


def pretrain_all(info: RunInfo, config: EnsembleConfig, plan: EnsemblePlan) -> None:
    """Pretrain every architecture of the plan that has no pretrained weights yet, concurrently."""
    run = RunFolder(info.run)
    archs = sorted({m.architecture for m in plan.members if not storage.exists(run.pretrained_record(m.architecture))})
    options = {"num_cpus": config.cpus_per_worker, "num_gpus": 1 if gpus_available() else 0,
               "runtime_env": training_runtime_env()}
    get_all([_pretrain.options(**options).remote(info, arch, config) for arch in archs])


@ray.remote
def _speed(architecture: str, image_size: int, batch_size: int, num_classes: int, threads: int, dims: int,
           precision: Precision) -> float:
    torch.set_num_threads(threads)
    return measure_seconds_per_step(architecture, image_size, batch_size, num_classes, dims=dims, precision=precision)


@ray.remote
def _augment_speed(augment: AugmentConfig, image_size: int, batch_size: int, threads: int, dims: int) -> float:
    torch.set_num_threads(threads)
    return measure_augment_seconds(augment, image_size, batch_size, dims)


def make_plan(info: RunInfo, config: EnsembleConfig) -> EnsemblePlan:
    """The run's plan: read back when an earlier attempt made it (a resumed run keeps its members and
    schedules), else sized now, measuring each architecture's speed on a worker when a budget is set."""
    folder = info.folder
    if storage.exists(folder.plan):
        return EnsemblePlan.model_validate(storage.read_json(folder.plan))
    train = config.train
    use_gpu = gpus_available()
    loader_workers = train.loader_workers if train.loader_workers is not None else (4 if use_gpu else 0)
    sizes = info.split_sizes or dict(Counter(read_version(info.dataset, info.version, columns=["split"])
                                             .column("split").to_pylist()))  # a run prepared before sizes were recorded
    per_epoch = steps_per_epoch(sizes.get("train", 0), train.batch_size, config.workers, loader_workers)
    speeds, augment_seconds = None, 0.0
    if train.budget_minutes and not (config.members and (train.epochs or train.steps)):
        archs = config.member_architectures()
        options = {"num_cpus": config.cpus_per_worker, "num_gpus": 1 if use_gpu else 0,
                   "runtime_env": training_runtime_env()}  # measured as the members will run
        refs = [_speed.options(**options).remote(a, info.image_size, train.batch_size, len(info.classes),
                                                 config.cpus_per_worker, info.dims, train.precision) for a in archs]
        augment = _augment_speed.options(num_cpus=config.cpus_per_worker, runtime_env=training_runtime_env()).remote(
            train.augment, info.image_size, train.batch_size, config.cpus_per_worker, info.dims)
        *measured, augment_seconds = get_all([*refs, augment])
        speeds = dict(zip(archs, measured, strict=True))
        augment_seconds /= max(1, loader_workers)  # loader processes augment beside the step
    plan = plan_ensemble(config, per_epoch, sizes.get("val", 0), slots(config), speeds, augment_seconds)
    plan.slots = min(plan.slots, len(plan.members))  # members training at once
    storage.write_json(folder.plan, plan.model_dump(mode="json"))
    return plan


def train_members(info: RunInfo, config: EnsembleConfig,
                  on_done: Callable[[MemberRecord], None] | None = None) -> TrainSummary:
    """Plan the ensemble, then train every member not finished yet: concurrently as far as the
    cluster has room (Ray queues the rest), or one after another when boosting. The budget's
    deadline counts from this call (a resumed attempt gets the budget again)."""
    started = time.time()
    config = config.for_dims(info.dims)
    ensure_ray()
    check_room(config)
    plan = make_plan(info, config)
    if config.pretrain.enabled:
        pretrain_all(info, config, plan)
    deadline = started + plan.pretrain_seconds + plan.train_seconds \
        if plan.train_seconds and plan.sized_by != "config" else None
    model, run = RunFolder(info.run).model, RunFolder(info.run)
    records: dict[str, MemberRecord] = {}
    pending: dict = {}
    previous: str | None = None  # boosting: the step of the member before
    for member in plan.members:
        if storage.exists(model.record(member.name)):  # finished by an earlier attempt of this run
            records[member.name] = model_store.load_record(model.uri, member.name)
        else:
            ref = _train_and_export.remote(info, member, config, plan, deadline, previous if config.boosting else None)
            if config.boosting:  # in sequence: the next member needs this one's errors
                records[member.name] = ray.get(wait_any([ref]))
                if on_done is not None:
                    on_done(records[member.name])
            else:
                pending[ref] = member.name
        previous = run.boosting(member.name)
    while pending:
        done = wait_any(list(pending))
        name = pending.pop(done)
        records[name] = ray.get(done)
        if on_done is not None:
            on_done(records[name])
    return TrainSummary(run=info.run, dataset_version=info.version, classes=info.classes, plan=plan,
                        members=[records[p.name] for p in plan.members], seconds=time.time() - started)
