"""How long one member trains: a number of epochs, how often it is checked on validation, and how
patient early stopping is, derived from the config, the split's size and (when the budget binds)
the measured speed."""

from __future__ import annotations

import math

from pydantic import BaseModel, Field

from tasks.model.config import TrainConfig

PEAK_AT = 0.3  # the one-cycle schedule's warm-up share: validation is noisy while the rate still rises


class RunLength(BaseModel):
    """One member's schedule: ``epochs`` in all, a validation check (and checkpoint) every
    ``epochs_per_check`` epochs, stopping after ``patience`` checks without a better smoothed AUC."""

    epochs: int = Field(ge=1)
    steps_per_epoch: int = Field(ge=1)
    epochs_per_check: int = Field(1, ge=1)
    patience: int = Field(ge=1)
    earliest_stop: int = Field(0, ge=0, description="no early stop before this epoch: the learning rate's peak")
    sized_by: str = Field(description="epochs (explicit), steps (explicit), default, or budget")

    @property
    def steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    @property
    def checks(self) -> int:
        return math.ceil(self.epochs / self.epochs_per_check)

    def is_check(self, epoch: int) -> bool:
        """Whether validation runs after ``epoch`` (0-based): every ``epochs_per_check``, and the last."""
        return (epoch + 1) % self.epochs_per_check == 0 or epoch + 1 == self.epochs


def default_steps(config: TrainConfig, steps_per_epoch: int) -> int:
    """Optimizer steps a default run aims for: at least ``min_steps`` (small datasets get more
    epochs) and at least ``min_epochs`` epochs (large ones see every image often enough)."""
    return config.steps or max(config.min_steps, config.min_epochs * steps_per_epoch)


def epoch_bound(config: TrainConfig, steps_per_epoch: int) -> bool:
    """Whether the default run is sized by ``min_epochs`` (a large split) rather than ``min_steps``."""
    return config.min_epochs * steps_per_epoch > config.min_steps


def run_length(config: TrainConfig, steps_per_epoch: int, max_steps: int | None = None, fill: bool = False) -> RunLength:
    """The member's schedule: ``config.epochs`` exactly when given (checked every epoch), else
    ``config.steps`` or the default, capped at ``max_steps`` (what the budget allows) when given;
    with ``fill``, exactly ``max_steps`` (a budget that binds leaves no member's time idle)."""
    steps_per_epoch = max(steps_per_epoch, 1)
    if config.epochs:
        return RunLength(epochs=config.epochs, steps_per_epoch=steps_per_epoch,
                         patience=config.early_stopping_patience or config.epochs, sized_by="epochs")
    steps, sized_by = default_steps(config, steps_per_epoch), "steps" if config.steps else "default"
    if max_steps is not None and (fill or max_steps < steps) and not config.steps:
        steps, sized_by = max_steps, "budget"
    # whole epochs: at least the steps asked for, at most those the budget allows
    epochs = max(1, (math.floor if sized_by == "budget" else math.ceil)(steps / steps_per_epoch))
    per_check = max(1, round(epochs / config.checks))
    checks = math.ceil(epochs / per_check)
    patience = config.early_stopping_patience or max(3, math.ceil(checks / 3))
    return RunLength(epochs=epochs, steps_per_epoch=steps_per_epoch, epochs_per_check=per_check,
                     patience=patience, earliest_stop=math.ceil(PEAK_AT * epochs), sized_by=sized_by)
