"""The per-worker training loop: plain ``train_epoch`` / ``predict_proba`` functions and ``fit``, which
runs with or without Ray (a ``Distributed`` adds the DDP touch points, marked ``# DDP``).

A member trains for a ``RunLength`` (tasks/train/budget.py) under a one-cycle learning-rate schedule
that spans exactly that run, is checked on validation every few epochs (optionally through an
exponential moving average of its weights) and keeps the check with the best smoothed AUC."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from tasks.core.metrics import auc, log_loss
from tasks.data.samples import Samples, Share
from tasks.model.architectures import build_model
from tasks.model.config import TrainConfig
from tasks.train.augment import Augmenter
from tasks.train.budget import PEAK_AT, RunLength, run_length
from tasks.train.distributed import Distributed
from tasks.train.precision import for_steps, grad_scaler, precision_name, to_layout
from tasks.train.schedule import Cycle, reachable_epochs, recent_pace
from tasks.train.weights import WeightAverage, average_decay, load_initial_weights, unwrap


def class_weights(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights, normalised to mean 1 (absent classes get weight 1)."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / num_classes, 1.0)
    return torch.tensor(weights / weights.mean(), dtype=torch.float32)


def train_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer, loss_fn: nn.Module,
                device: torch.device, scheduler=None, scaler: torch.amp.GradScaler | None = None,
                after_step: Callable[[], None] | None = None, autocast: torch.dtype | None = None) -> float:
    """One pass over ``loader``, its steps autocast to ``autocast`` when given (float16 needs
    ``scaler``); returns the mean training loss."""
    model.train()
    total, seen = 0.0, 0
    for x, y in loader:
        x, y = _to_device(x, device), y.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
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
        if after_step is not None:
            after_step()
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


def auc_tolerance(labels: np.ndarray, value: float) -> float:
    """Half the Hanley-McNeil standard error of an AUC of ``value`` on ``labels`` (positive class 1):
    on a small validation split, AUCs closer than this are noise, and the loss decides between them."""
    positives = int(np.sum(labels == 1))
    negatives = len(labels) - positives
    if np.isnan(value) or not positives or not negatives:
        return 0.0
    q1, q2 = value / (2 - value), 2 * value**2 / (1 + value)
    variance = (value * (1 - value) + (positives - 1) * (q1 - value**2) + (negatives - 1) * (q2 - value**2)) / (positives * negatives)
    return 0.5 * float(np.sqrt(max(variance, 0.0)))


def _better(val_auc: float, val_loss: float, result: FitResult, tolerance: float) -> bool:
    """Whether a check beats the kept one: a smoothed AUC clearly above the kept one's, or one within
    ``tolerance`` of the highest seen with a lower loss. An undefined AUC (the validation split
    lacks a class) counts as lowest, so such runs are judged on validation loss alone."""
    value = float("-inf") if np.isnan(val_auc) else val_auc
    if value > result.best_auc + tolerance:
        return True
    return value >= result.top_auc - tolerance and val_loss < result.best_loss


def _to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    return to_layout(x.to(device, non_blocking=True))


@dataclass
class FitResult:
    length: RunLength
    history: list[dict] = field(default_factory=list)  # one dict per validation check
    best_auc: float = float("-inf")  # smoothed validation AUC of the best check
    best_loss: float = float("inf")  # its smoothed validation loss: decides between AUCs within noise
    top_auc: float = float("-inf")  # the highest smoothed validation AUC of any check
    best_state: dict | None = None
    epochs_run: list[int] = field(default_factory=list)
    stopped: str = "running"  # then "completed", "early stopping", "shortened" or "deadline"


def _smoothed(recent: list[tuple[float, float]], window: int) -> tuple[float, float]:
    """Mean validation AUC and loss of the last ``window`` checks (noisy on small validation splits)."""
    aucs, losses = zip(*recent[-window:], strict=True)
    return float(np.mean(aucs)), float(np.mean(losses))


def fit(
    config: TrainConfig,
    train: Samples,
    val: Samples,
    num_classes: int,
    device: torch.device | None = None,
    on_check: Callable[[int, dict, dict], None] | None = None,
    resume: dict | None = None,
    distributed: Distributed | None = None,
    length: RunLength | None = None,
    deadline: float | None = None,
) -> FitResult:
    """Train one member for ``length`` (default: from the config and the split's size), choosing the
    check with the best smoothed validation AUC; stop early after ``length.patience`` checks without
    a better one, or at the first check after ``deadline`` (a ``time.time()``).

    Each rank reads its own share of ``train`` and ``val`` (``Samples`` shard by rank).
    ``on_check(epoch, metrics, checkpoint)`` is where a driver saves the checkpoint (Ray Train:
    ``ray.train.report``); ``resume`` is such a checkpoint, and training continues after its epoch.
    ``distributed`` holds the DDP touch points; without it this is plain single-process training.
    """
    dist = distributed or Distributed()
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(config.seed)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    model = build_model(config.model, num_classes, train.image_size, train.dims)
    if config.init_weights and not resume:
        load_initial_weights(model, config.init_weights)
    if resume:
        model.load_state_dict(resume["model"])
    model, autocast = for_steps(model, config.precision, device, train.image_size, train.dims)
    model = dist.wrap_model(model)  # DDP
    workers = config.loader_workers if config.loader_workers is not None else (4 if device.type == "cuda" else 0)
    per_epoch = train.steps(config.batch_size, dist.world, workers)
    # a planned length keeps its epochs; its steps per epoch are the loader's own
    length = length.model_copy(update={"steps_per_epoch": per_epoch}) if length else run_length(config, per_epoch)
    decay = average_decay(config, length.steps)
    average = WeightAverage(model, decay) if decay is not None else None

    def loader(samples: Samples, epoch: int, training: bool) -> DataLoader:  # DDP: each rank its own share
        return samples.loader(Share(epoch, dist.rank, dist.world, training), config.batch_size if training else 256,
                              config.seed, partial(Augmenter, config.augment), workers, device.type == "cuda")

    weights = class_weights(train.labels, num_classes) if config.class_weighted_loss else None
    loss_fn = nn.CrossEntropyLoss(weight=weights.to(device) if weights is not None else None)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = Cycle(optimizer, max_lr=config.learning_rate, total_steps=length.steps, pct_start=PEAK_AT)
    scaler = grad_scaler(autocast, device)
    result, start, stale, recent, end = FitResult(length), 0, 0, [], length.epochs
    if resume:
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        if average is not None and resume.get("average") is not None:
            average.model.load_state_dict(resume["average"])
            average.updates = resume.get("average_updates", 0)
        start, stale = resume["epoch"] + 1, resume["stale"]
        result.best_auc, result.best_state = resume["best_auc"], resume["best_model"]
        result.best_loss = resume.get("best_loss", float("inf"))
        result.top_auc = resume.get("top_auc", result.best_auc)
        result.history = list(resume.get("history", []))
        recent = [tuple(pair) for pair in resume.get("recent", [])]
        end = resume.get("end_epochs", length.epochs)
    after_step = (lambda: average.update(model)) if average is not None else None
    losses, check_started, trained, epoch_seconds = [], time.time(), time.time(), []
    for epoch in range(start, length.epochs):  # until ``end``, which may move in and back out
        losses.append(dist.mean(train_epoch(model, loader(train, epoch, True), optimizer, loss_fn, device, scheduler,
                                            scaler, after_step, autocast)))
        result.epochs_run.append(epoch)
        epoch_seconds.append(time.time() - trained)  # this epoch's steps and the check before them
        trained = time.time()
        late = deadline is not None and dist.mean(float(time.time() > deadline)) > 0  # DDP: every rank agrees
        if deadline is not None and not late and scheduler.past_peak and (pace := recent_pace(epoch_seconds)) is not None:
            # DDP: every rank moves its end by the same figures
            reach = reachable_epochs(dist.mean(pace), dist.mean(deadline - time.time()), epoch + 1, length.epochs)
            if reach != end and scheduler.end_at(reach * length.steps_per_epoch):
                end = reach  # the schedule anneals to the epoch the member can reach, never past the plan
        if not (length.is_check(epoch) or late or epoch + 1 == end):
            continue
        judged = average.model if average is not None else model
        gathered = dist.gather(predict_proba(judged, loader(val, epoch, False), device))  # DDP: every rank's rows
        if not np.isfinite(gathered.probs).all():
            raise FloatingPointError(f"{config.model}: the validation outputs are not finite after epoch {epoch + 1}: "
                                     "the training diverged (try a lower train.learning_rate, or train.precision: float32)")
        val_auc, val_loss = auc(gathered.probs, gathered.labels, positive=1), log_loss(gathered.probs, gathered.labels)
        recent.append((val_auc, val_loss))
        smooth_auc, smooth_loss = _smoothed(recent, config.smoothing)
        # a check is kept only once its smoothing window is full: one lucky early check on a small
        # validation split must not pick weights that have not learned yet
        eligible = len(recent) >= min(config.smoothing, length.checks) or (result.best_state is None and late)
        improved = eligible and _better(smooth_auc, smooth_loss, result, auc_tolerance(gathered.labels, smooth_auc))
        result.top_auc = max(result.top_auc, float("-inf") if np.isnan(smooth_auc) else smooth_auc)
        if improved:
            result.best_auc, result.best_loss = smooth_auc, smooth_loss
            result.best_state = {k: v.detach().cpu().clone() for k, v in unwrap(judged).state_dict().items()}
        stale = 0 if improved else stale + 1
        metrics = {"epoch": epoch, "steps": (epoch + 1) * length.steps_per_epoch, "end_steps": end * length.steps_per_epoch,
                   "train_loss": float(np.mean(losses)),
                   "val_auc": val_auc, "val_loss": val_loss, "val_auc_smoothed": smooth_auc,
                   "learning_rate": scheduler.get_last_lr()[0], "epoch_started": check_started,
                   "seconds": time.time() - check_started, "precision": precision_name(autocast)}
        losses, check_started = [], time.time()
        result.history.append(metrics)
        if epoch + 1 == end:  # its schedule's end, the planned or a moved one, even if a little late
            result.stopped = "completed" if end == length.epochs else "shortened"
        elif late or (stale >= length.patience and epoch >= length.earliest_stop):
            result.stopped = "deadline" if late else "early stopping"
        if on_check is not None:
            on_check(epoch, metrics, {
                "epoch": epoch, "stale": stale, "best_auc": result.best_auc, "best_loss": result.best_loss, "top_auc": result.top_auc,
                "best_model": result.best_state, "recent": recent,
                "model": unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "history": result.history,
                "average": average.model.state_dict() if average is not None else None,
                "average_updates": average.updates if average is not None else 0, "stopped": result.stopped,
                "end_epochs": end,
            })
        if result.stopped != "running":
            break
    return result
