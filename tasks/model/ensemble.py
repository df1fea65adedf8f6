"""Combining ensemble members' class probabilities by a fitted ``EnsembleSpec``.

Combiners: ``mean`` probability, majority ``vote``, validation-``weighted`` mean, ``stacking``
(a logistic regression on the members' log-probabilities), and ``boosted`` (a boosted run's members
weighted by the vote weights fitted in training); then the calibration (a temperature and a
per-class bias) and the operating point. The spec is plain numbers, stored as JSON beside the
weights; ``tasks.model.ensemble_fit`` fits it on validation. This module needs NumPy and SciPy's
softmax only: every process that loads a model imports it, each member's Ray task among them.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field
from scipy.special import softmax

from tasks.model.config import COMBINERS

EPS = 1e-7


class EnsembleSpec(BaseModel):
    """How member probabilities (members x images x classes) become the ensemble's probabilities."""

    combiner: str = Field("mean", description="one of " + ", ".join(COMBINERS))
    weights: list[float] | None = Field(None, description="per-member weights (weighted, boosted)")
    stack_coef: list[list[float]] | None = Field(None, description="logistic regression coefficients (stacking)")
    stack_intercept: list[float] | None = None
    temperature: float = Field(1.0, gt=0, description="divides the log-probabilities before the softmax")
    bias: list[float] | None = Field(None, description="per-class, added after the temperature (none: zero)")
    threshold: float = Field(0.5, description="operating point on the positive class (binary tasks)")
    positive: int = Field(1, description="index of the positive class (binary tasks)")

    def calibration(self) -> str:
        """The fitted calibration in words: "temperature 1.20, class bias [0.0, -1.15]"."""
        bias = f", class bias {[round(b, 2) for b in self.bias]}" if self.bias else ""
        return f"temperature {self.temperature:.2f}{bias}"


def stack_features(member_probs: np.ndarray) -> np.ndarray:
    m, n, c = member_probs.shape
    return np.log(np.clip(member_probs, EPS, 1)).transpose(1, 0, 2).reshape(n, m * c)


def stack_apply(features: np.ndarray, coef: np.ndarray, intercept: np.ndarray, n_classes: int) -> np.ndarray:
    logits = features @ coef.T + intercept
    if n_classes == 2 and logits.shape[1] == 1:  # sklearn's binary model: one logit for class 1
        logits = np.hstack([np.zeros_like(logits), logits])
    return softmax(logits, axis=1)


def combine(member_probs: np.ndarray, spec: EnsembleSpec) -> np.ndarray:
    """The ensemble's probabilities (images x classes) from ``member_probs`` (members x images x classes)."""
    m, n, c = member_probs.shape
    if spec.combiner == "mean":
        probs = member_probs.mean(axis=0)
    elif spec.combiner in ("weighted", "boosted"):
        weights = np.asarray(spec.weights, dtype=np.float64)
        probs = np.tensordot(weights / weights.sum(), member_probs, axes=1)
    elif spec.combiner == "vote":
        votes = np.eye(c)[member_probs.argmax(axis=2)]  # members x images x classes, one-hot
        probs = votes.mean(axis=0)
    elif spec.combiner == "stacking":
        probs = stack_apply(stack_features(member_probs), np.asarray(spec.stack_coef),
                             np.asarray(spec.stack_intercept), c)
    else:
        raise ValueError(f"unknown combiner {spec.combiner!r}; choose one of {COMBINERS}")
    return calibrate(probs, spec.temperature, spec.bias)


def calibrate(probs: np.ndarray, temperature: float, bias: list[float] | None = None) -> np.ndarray:
    """softmax(log p / temperature + bias)."""
    if temperature == 1.0 and not bias:
        return probs
    logits = np.log(np.clip(probs, EPS, 1)) / temperature
    return softmax(logits + np.asarray(bias) if bias else logits, axis=1)
