"""Sizing an ensemble to its budget and the cluster: how many members train, how many at once, and
how long each one trains, from the measured speed of each architecture on a worker.

The plan is deterministic whenever the budget does not bind (the default members and steps fit):
then the speed only decides that they fit. When it binds, the plan depends on the measured speed,
and is recorded in the run (``plan.json``) so that a rerun can pin it (``members``, ``train.steps``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import torch
from pydantic import BaseModel, Field
from torch import nn

from tasks.model.architectures import build_model
from tasks.model.config import AugmentConfig, EnsembleConfig, MemberPlan, Precision
from tasks.train.augment import Augmenter
from tasks.train.budget import RunLength, epoch_bound, run_length
from tasks.train.loop import train_epoch
from tasks.train.precision import for_steps, grad_scaler

# a member's wall time beyond its steps (worker group, dataset index, export), measured on the 2-core
# reference machine
STARTUP_SECONDS = 50.0
# a real step against the probes (the training step, and the augmentation of one batch, both timed
# on a worker): real = STEP_FACTOR x (step + augmentation) + STEP_SECONDS (data loading, the weight
# average, the other member's contention). Fitted on the reference machine's quiet runs: 2-D
# PneumoniaMNIST (real 1.4x the step alone) and 3-D VesselMNIST3D (1.17x; its augmentation is a
# sixth of its step), then rounded up
STEP_FACTOR = 1.1
STEP_SECONDS = 0.025
# the share of the training time that runs grown into room to spare (``train.fill_budget``) may plan
# to fill: on full PneumoniaMNIST the estimate erred by 8% one way and about 7% the other (1611 s planned, 1481 s
# taken; 1605 s planned while the last resnet18_small ran 28 of its 34 epochs, fewer than its default
# 30, and ended still rising), and growth must not leave a member shorter than it would have been
GROW_INTO = 0.92


class EnsemblePlan(BaseModel):
    """The members to train and each one's schedule, with the figures the sizing used."""

    members: list[MemberPlan]
    lengths: dict[str, RunLength] = Field(description="per member name")
    slots: int = Field(description="members training at once (cluster room; 1 when boosting)")
    seconds_per_step: dict[str, float] = Field(default_factory=dict, description="measured, per architecture")
    augment_seconds: float = Field(0.0, description="measured: augmenting one training batch (when the loop does it)")
    budget_seconds: float | None = None
    train_seconds: float | None = Field(None, description="the budget less the evaluation's reserve")
    estimated_seconds: float | None = Field(None, description="predicted training wall time of this plan")
    pretrain_seconds: float = Field(0.0, description="the budget's share for self-supervised pretraining, before training")
    sized_by: str = Field(description="config (members and length given), default (the defaults fit), or budget")

    def summary(self) -> str:
        lengths = {name: f"{length.steps} steps ({length.epochs} epochs, {length.sized_by})" for name, length in self.lengths.items()}
        budget = f" within {self.train_seconds:.0f} s of training" if self.train_seconds else ""
        return f"{len(self.members)} members, {self.slots} at a time{budget}: " + "; ".join(
            f"{m.name} {m.architecture} {lengths[m.name]}" for m in self.members)


def evaluation_reserve(budget_seconds: float) -> float:
    """What the budget keeps for evaluation and the run's fixed costs: a tenth, at least a minute."""
    return max(60.0, 0.1 * budget_seconds)


def fastest(work: Callable[[], object], rounds: int) -> float:
    """The shortest wall time of ``rounds`` runs of ``work``: a run another process interrupted says
    little of the work itself."""
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        work()
        timings.append(time.perf_counter() - started)
    return min(timings)


def measure_seconds_per_step(architecture: str, image_size: int, batch_size: int, num_classes: int,
                             device: torch.device | None = None, steps: int = 5, dims: int = 2,
                             precision: Precision = "auto", rounds: int = 3) -> float:
    """Wall time of one optimizer step (the training loop's ``train_epoch``: forward, backward, AdamW,
    in its arithmetic and layout) on one batch of random data, after two warm-up steps: the fastest
    of ``rounds`` rounds of ``steps``."""
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, autocast = for_steps(build_model(architecture, num_classes, image_size, dims), precision, device, image_size,
                                dims)  # as the member will run
    optimizer = torch.optim.AdamW(model.parameters())
    scaler, loss_fn = grad_scaler(autocast, device), nn.CrossEntropyLoss()
    batch = (torch.randn(batch_size, 1, *(image_size,) * dims), torch.randint(0, num_classes, (batch_size,)))
    train_epoch(model, [batch] * 2, optimizer, loss_fn, device, scaler=scaler, autocast=autocast)  # warm-up
    return fastest(lambda: train_epoch(model, [batch] * steps, optimizer, loss_fn, device, scaler=scaler,
                                       autocast=autocast), rounds) / steps


def measure_augment_seconds(augment: AugmentConfig, image_size: int, batch_size: int, dims: int = 2,
                            repeats: int = 3) -> float:
    """Wall time of augmenting one batch of random uint8 images (or volumes), after one warm-up batch:
    the fastest of ``repeats`` batches."""
    augmenter = Augmenter(augment, image_size)
    batch = np.random.default_rng(0).integers(0, 256, (batch_size, *(image_size,) * dims), dtype=np.uint8)
    for image in batch[:2]:
        augmenter(image)
    return fastest(lambda: [augmenter(image) for image in batch], repeats)


def step_cost(seconds_per_step: float, augment_seconds: float) -> float:
    """A member's expected wall time per optimizer step, from the probes (see STEP_FACTOR)."""
    return STEP_FACTOR * (seconds_per_step + augment_seconds) + STEP_SECONDS


def pretrain_seconds(config: EnsembleConfig, seconds_per_step: dict[str, float], slots: int,
                     augment_seconds: float = 0.0) -> float:
    """The self-supervised stage's share of the budget: each architecture's steps on two views of
    ``pretrain.batch_size`` images, the architectures side by side on the cluster's slots."""
    if not config.pretrain.enabled:
        return 0.0
    scale = 2 * config.pretrain.batch_size / config.train.batch_size
    per_arch = [STARTUP_SECONDS + config.pretrain.steps * step_cost(seconds_per_step[a] * scale, augment_seconds * scale)
                for a in config.member_architectures()]
    return _makespan(per_arch, slots)


def _makespan(seconds: list[float], slots: int) -> float:
    """Wall time of members queued in order onto ``slots`` lanes (Ray starts each as a lane frees)."""
    lanes = [0.0] * slots
    for s in seconds:
        lanes[lanes.index(min(lanes))] += s
    return max(lanes)


def plan_ensemble(config: EnsembleConfig, steps_per_epoch: int, val_rows: int, slots: int,
                  seconds_per_step: dict[str, float] | None = None, augment_seconds: float = 0.0) -> EnsemblePlan:
    """Members and their schedules. Without a budget (or without measured speeds) the config's
    members (default ``most_members``) train for their configured length. With one, the most members
    up to ``most_members`` whose default runs fit; when no more than ``min_members`` do, those train
    for their lane's whole share of the budget instead of their default length (a slow architecture
    for fewer steps, a fast one for more). When they fit with room to spare, their runs grow to that
    share as ``train.fill_budget`` says (default: large splits only). Explicit ``members`` and
    ``train.epochs``/``steps`` are kept."""
    slots = 1 if config.boosting else max(1, slots)
    train = config.train
    explicit_length = bool(train.epochs or train.steps)
    budget = train.budget_minutes * 60 if train.budget_minutes else None
    if budget is None or not seconds_per_step:
        plans = config.plans(config.members or config.most_members)
        return EnsemblePlan(members=plans, slots=slots, sized_by="config" if config.members else "default",
                            lengths={p.name: run_length(config.member_config(p), steps_per_epoch) for p in plans})
    pretraining = pretrain_seconds(config, seconds_per_step, slots, augment_seconds)
    available = budget - evaluation_reserve(budget) - pretraining
    check_steps = train.checks * val_rows / (3 * train.batch_size)  # a validation pass: a forward per row

    def per_step(plan: MemberPlan) -> float:
        return step_cost(seconds_per_step[plan.architecture], augment_seconds)

    def seconds(plan: MemberPlan, steps: int) -> float:
        return STARTUP_SECONDS + steps * per_step(plan) + check_steps * seconds_per_step[plan.architecture] * STEP_FACTOR

    def makespan(plans: list[MemberPlan], lengths: dict[str, RunLength]) -> float:
        """Estimated seconds for ``plans`` at ``lengths``, ``slots`` at a time."""
        return _makespan([seconds(p, lengths[p.name].steps) for p in plans], slots)

    def plan(plans: list[MemberPlan], lengths: dict[str, RunLength], sized_by: str) -> EnsemblePlan:
        estimate = makespan(plans, lengths)
        return EnsemblePlan(members=plans, lengths=lengths, slots=slots, seconds_per_step=seconds_per_step,
                            augment_seconds=augment_seconds, budget_seconds=budget, train_seconds=available,
                            estimated_seconds=estimate, sized_by=sized_by,
                            pretrain_seconds=pretraining)

    def filling(plans: list[MemberPlan], room: float = available) -> dict[str, RunLength]:
        """Each member trains for its lane's whole share of ``room`` (a fast architecture for more steps)."""
        share = room / math.ceil(len(plans) / slots)
        return {p.name: run_length(config.member_config(p), steps_per_epoch, max_steps=max(steps_per_epoch, int(
            (share - seconds(p, 0)) / per_step(p))), fill=True) for p in plans}

    def default_lengths(plans: list[MemberPlan]) -> dict[str, RunLength]:
        return {p.name: run_length(config.member_config(p), steps_per_epoch) for p in plans}

    def grown(plans: list[MemberPlan], lengths: dict[str, RunLength]) -> tuple[dict[str, RunLength], str]:
        """The default ``lengths``, with (``train.fill_budget``) each member whose lane's share of
        ``GROW_INTO`` of the time is longer grown to it, when the whole still fits; the others keep theirs."""
        large = epoch_bound(train, steps_per_epoch)
        if train.fill_budget == "never" or (train.fill_budget == "large" and not large):
            return lengths, "default"
        filled = filling(plans, GROW_INTO * available)
        longer = {p.name: max(lengths[p.name], filled[p.name], key=lambda length: length.steps) for p in plans}
        if longer != lengths and makespan(plans, longer) <= available:
            return longer, "budget"
        return lengths, "default"

    if explicit_length:
        plans = config.plans(config.members or config.most_members)
        return plan(plans, default_lengths(plans), "config" if config.members else "default")
    # the most members whose default runs fit; the fewest (or those asked for, when they do not fit)
    # train for their lane's whole share of the budget instead: the rest of it is theirs
    counts = [config.members] if config.members else range(config.most_members, config.min_members, -1)
    for count in counts:
        plans = config.plans(count)
        lengths = default_lengths(plans)
        if makespan(plans, lengths) <= available:
            return plan(plans, *grown(plans, lengths))
    plans = config.plans(config.members or config.min_members)
    return plan(plans, filling(plans), "budget")
