"""The per-worker training loop: plain ``train_epoch`` / ``evaluate`` functions and ``fit``, which
runs with or without Ray (Ray Train only adds the distributed touch points, marked ``# DDP``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from tasks.core.metrics import auc
from tasks.data.samples import Samples, Share
from tasks.model.architectures import build_model
from tasks.model.config import TrainConfig
from tasks.train.augment import Augmenter


def class_weights(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights, normalised to mean 1 (absent classes get weight 1)."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / num_classes, 1.0)
    return torch.tensor(weights / weights.mean(), dtype=torch.float32)


def train_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer, loss_fn: nn.Module,
                device: torch.device, scheduler=None, scaler: torch.amp.GradScaler | None = None) -> float:
    """One pass over ``loader``; returns the mean training loss."""
    model.train()
    total, seen = 0.0, 0
    for x, y in loader:
        x, y = _to_device(x, device), y.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, enabled=scaler is not None):
            loss = loss_fn(model(x), y)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total += float(loss.detach()) * len(y)
        seen += len(y)
    return total / max(seen, 1)


@dataclass
class Scored:
    """Class probabilities (rows x classes) and the true class of each row."""

    probs: np.ndarray
    labels: np.ndarray


@torch.no_grad()
def predict_proba(model: nn.Module, loader: DataLoader, device: torch.device) -> Scored:
    """Class probabilities and true labels for every item of ``loader``, in order."""
    model.eval()
    probs, labels = [], []
    for x, y in loader:
        with torch.autocast(device.type, enabled=device.type == "cuda"):
            logits = model(_to_device(x, device))
        probs.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
        labels.append(y.numpy())
    return Scored(np.concatenate(probs), np.concatenate(labels))


def log_loss(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the true classes (unweighted)."""
    if not len(labels):
        return float("nan")
    return float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-7, 1)).mean())


def _score(val_auc: float, val_loss: float) -> tuple[float, float]:
    """Early-stopping order: higher AUC, then lower loss; an AUC that is undefined (the validation
    split lacks a class) counts as lowest, so such runs stop on validation loss alone."""
    return (float("-inf") if np.isnan(val_auc) else val_auc, -val_loss)


def _to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if device.type == "cuda" else x


def unwrap(model: nn.Module) -> nn.Module:
    """The network inside a DDP wrapper (state dicts without ``module.`` prefixes)."""
    return getattr(model, "module", model)


class Distributed:
    """DDP touch points; this base class is the single-process identity (subclassed for Ray Train)."""

    rank, world = 0, 1

    def wrap_model(self, model: nn.Module) -> nn.Module:
        return model

    def gather(self, scored: Scored) -> Scored:
        """Every rank's rows (each rank scored its own share of validation)."""
        return scored

    def mean(self, value: float) -> float:
        return value


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)  # one dict per epoch run
    best_auc: float = float("-inf")
    best_loss: float = float("inf")  # validation loss of the best epoch: breaks ties in AUC
    best_state: dict | None = None
    epochs_run: list[int] = field(default_factory=list)


def fit(
    config: TrainConfig,
    train: Samples,
    val: Samples,
    num_classes: int,
    device: torch.device | None = None,
    on_epoch_end: Callable[[int, dict, dict], None] | None = None,
    resume: dict | None = None,
    distributed: Distributed | None = None,
) -> FitResult:
    """Train one member with early stopping on validation AUC.

    Each rank reads its own share of ``train`` and ``val`` (``Samples`` shard by rank).
    ``on_epoch_end(epoch, metrics, checkpoint)`` is where a driver saves the checkpoint (Ray Train:
    ``ray.train.report``); ``resume`` is such a checkpoint, and training continues after its epoch.
    ``distributed`` holds the DDP touch points; without it this is plain single-process training.
    """
    dist = distributed or Distributed()
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(config.seed)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    model = build_model(config.model, num_classes, train.image_size)
    if resume:
        model.load_state_dict(resume["model"])
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    model = dist.wrap_model(model)  # DDP
    workers = config.loader_workers if config.loader_workers is not None else (4 if device.type == "cuda" else 0)

    def loader(samples: Samples, epoch: int, training: bool) -> DataLoader:  # DDP: each rank its own share
        return samples.loader(Share(epoch, dist.rank, dist.world, training), config.batch_size if training else 256,
                              config.seed, partial(Augmenter, config.augment), workers, device.type == "cuda")

    weights = class_weights(train.labels, num_classes) if config.class_weighted_loss else None
    loss_fn = nn.CrossEntropyLoss(weight=weights.to(device) if weights is not None else None)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.learning_rate,
                                                    total_steps=config.epochs * max(train.steps(config.batch_size, dist.world, workers), 1))
    scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" else None
    result, start, stale = FitResult(), 0, 0
    if resume:
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        start, stale = resume["epoch"] + 1, resume["stale"]
        result.best_auc, result.best_state = resume["best_auc"], resume["best_model"]
        result.best_loss = resume.get("best_loss", float("inf"))
        result.history = list(resume.get("history", []))
    for epoch in range(start, config.epochs):
        epoch_started = time.time()
        loss = dist.mean(train_epoch(model, loader(train, epoch, True), optimizer, loss_fn, device, scheduler, scaler))
        gathered = dist.gather(predict_proba(model, loader(val, epoch, False), device))  # DDP: every rank's rows
        val_probs, val_true = gathered.probs, gathered.labels
        val_auc, val_loss = auc(val_probs, val_true, positive=1), log_loss(val_probs, val_true)
        improved = _score(val_auc, val_loss) > _score(result.best_auc, result.best_loss)
        if improved:
            result.best_auc, result.best_loss = val_auc, val_loss
            result.best_state = {k: v.detach().cpu().clone() for k, v in unwrap(model).state_dict().items()}
        stale = 0 if improved else stale + 1
        metrics = {"epoch": epoch, "train_loss": loss, "val_auc": val_auc, "val_loss": val_loss, "epoch_started": epoch_started}
        result.history.append(metrics)
        result.epochs_run.append(epoch)
        if on_epoch_end is not None:
            on_epoch_end(epoch, metrics, {
                "epoch": epoch, "stale": stale, "best_auc": result.best_auc, "best_loss": result.best_loss,
                "best_model": result.best_state,
                "model": unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "history": result.history,
            })
        if stale >= config.early_stopping_patience:
            break
    return result
