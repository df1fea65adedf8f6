"""Boosting (SAMME, multi-class AdaBoost) by resampling: member m trains on the training split drawn
in proportion to weights that grow on the rows the members before it got wrong; each member's vote
weight is fitted from its weighted training error."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field

MIN_ERROR = 1e-3  # a member that fits the training split perfectly still gets a finite weight


class BoostingStep(BaseModel):
    """One member's fitted vote weight and the row weights the next member trains on."""

    error: float = Field(description="weighted training error of this member")
    weight: float = Field(description="its vote weight (alpha); 0 when no better than chance")
    next_weights: list[float] = Field(description="row weights for the next member, summing to 1")


def uniform(rows: int) -> np.ndarray:
    return np.full(rows, 1.0 / rows)


def samme_step(weights: np.ndarray, wrong: np.ndarray, num_classes: int) -> BoostingStep:
    """SAMME: error = weighted share wrong; alpha = log((1 - error) / error) + log(K - 1); the wrong
    rows' weights are multiplied by exp(alpha). A member no better than chance (error >= 1 - 1/K)
    gets alpha 0 and leaves the weights as they were."""
    weights = np.asarray(weights, dtype=np.float64) / np.sum(weights)
    wrong = np.asarray(wrong, dtype=bool)
    error = float(np.clip(weights[wrong].sum(), MIN_ERROR, 1.0))
    if error >= 1.0 - 1.0 / num_classes:
        return BoostingStep(error=error, weight=0.0, next_weights=weights.tolist())
    alpha = float(np.log((1.0 - error) / error) + np.log(num_classes - 1))
    updated = weights * np.exp(alpha * wrong)
    return BoostingStep(error=error, weight=alpha, next_weights=(updated / updated.sum()).tolist())
