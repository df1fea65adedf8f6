"""The training loop's DDP touch points: ``Distributed`` is the single-process identity;
``ProcessGroup`` is DDP over torch.distributed's default process group, whichever launcher started
it (Ray Train's workers subclass it in tasks/train/worker.py; benchmarks/gpu.py spawns its own)."""

from __future__ import annotations

from typing import Protocol, TypeVar

import numpy as np
import torch
import torch.distributed as torch_dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


class Rows(Protocol):
    """What ``gather`` joins: per-row class probabilities and labels (the loop's ``Scored``)."""

    probs: np.ndarray
    labels: np.ndarray


R = TypeVar("R", bound=Rows)


class Distributed:
    """One process: the model as it is, its own rows, its own figures."""

    rank, world = 0, 1

    def wrap_model(self, model: nn.Module) -> nn.Module:
        return model

    def all_objects(self, value) -> list:
        """``value`` from every rank, in rank order."""
        return [value]

    def gather(self, scored: R) -> R:
        """Every rank's rows (each rank scored its own share of validation), in rank order."""
        if self.world == 1:
            return scored
        parts = self.all_objects(scored)
        return type(scored)(np.concatenate([p.probs for p in parts]), np.concatenate([p.labels for p in parts]))

    def mean(self, value: float) -> float:
        """The mean of ``value`` over the ranks."""
        return value


class ProcessGroup(Distributed):
    """DDP over the default process group, already initialised, on ``device`` (this rank's GPU or
    the CPU). Collectives use tensors on ``device``: NCCL reduces CUDA tensors only."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        if torch_dist.is_available() and torch_dist.is_initialized():
            self.rank, self.world = torch_dist.get_rank(), torch_dist.get_world_size()

    def wrap_model(self, model: nn.Module) -> nn.Module:
        if self.world == 1:
            return model
        return DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def all_objects(self, value) -> list:
        if self.world == 1:
            return [value]
        parts: list = [None] * self.world
        torch_dist.all_gather_object(parts, value)  # NCCL: through the current CUDA device (set by the launcher)
        return parts

    def mean(self, value: float) -> float:
        if self.world == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        torch_dist.all_reduce(tensor)
        return float(tensor) / self.world
