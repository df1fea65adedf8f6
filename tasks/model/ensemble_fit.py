"""Fitting an ensemble's ``EnsembleSpec`` on validation data: the simplest combiner whose validation
AUC is within validation's noise of the best's (stacking cross-fitted by patient), then the calibration (a temperature and, by default, a
per-class bias: the class-weighted loss shifts probabilities towards rare classes, and the bias
shifts them back) and the operating point. Evaluation imports this module; training does not
(scikit-learn's linear models and SciPy's optimiser cost each process seconds of imports).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_softmax
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold

from tasks.core import metrics
from tasks.model.config import COMBINERS
from tasks.model.ensemble import EPS, EnsembleSpec, calibrate, combine, stack_apply, stack_features


def fit_calibration(probs: np.ndarray, labels: np.ndarray, bias: bool = True) -> tuple[float, list[float] | None]:
    """The temperature (within 0.25..8) and, with ``bias``, the per-class bias (the first class's
    fixed at 0, the others within +-10) that minimise the negative log-likelihood of ``labels``.
    Bounded: on perfectly separated validation data the likelihood alone would drive them to extremes."""
    logp = np.log(np.clip(probs, EPS, 1))
    classes = probs.shape[1]
    free = classes - 1 if bias else 0

    def nll(x: np.ndarray) -> float:
        shift = np.r_[0.0, x[1:]] if free else 0.0
        return float(-log_softmax(logp / np.exp(x[0]) + shift, axis=1)[np.arange(len(labels)), labels].mean())

    bounds = [(np.log(0.25), np.log(8))] + [(-10.0, 10.0)] * free
    x = minimize(nll, np.zeros(1 + free), method="L-BFGS-B", bounds=bounds).x
    return float(np.exp(x[0])), [0.0, *map(float, x[1:])] if free else None


def validation_weights(member_probs: np.ndarray, labels: np.ndarray, positive: int) -> list[float]:
    """Each member weighted by how far its validation AUC is above chance (equal if none is)."""
    skill = np.array([max(metrics.auc(p, labels, positive) - 0.5, 0.0) for p in member_probs])
    skill = np.nan_to_num(skill)
    return (skill / skill.sum()).tolist() if skill.sum() > 0 else [1.0 / len(member_probs)] * len(member_probs)


def fit_stacking(member_probs: np.ndarray, labels: np.ndarray, groups: np.ndarray,
                 seed: int = 0) -> tuple[np.ndarray, list[list[float]], list[float]] | None:
    """Cross-fitted stacking: out-of-fold probabilities for every validation image (each predicted by
    a model that never saw its patient) and the coefficients refitted on all of validation.
    None when validation is too small to split by patient and class."""
    features = stack_features(member_probs)
    counts = np.bincount(labels)
    folds = int(min(5, counts[counts > 0].min(), len(np.unique(groups))))
    if folds < 2 or len(np.unique(labels)) < 2:
        return None
    oof = np.zeros((len(labels), member_probs.shape[2]))
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, held in splitter.split(features, labels, groups):
        if len(np.unique(labels[train])) < member_probs.shape[2]:
            return None
        learner = LogisticRegression(max_iter=1000).fit(features[train], labels[train])
        oof[held] = stack_apply(features[held], learner.coef_, learner.intercept_, member_probs.shape[2])
    learner = LogisticRegression(max_iter=1000).fit(features, labels)
    return oof, learner.coef_.tolist(), learner.intercept_.tolist()


@dataclass
class FittedEnsemble:
    """The chosen spec, each candidate combiner's validation AUC and the standard error of its gap to the
    best candidate's, and the validation probabilities to report (out-of-fold for stacking, so
    validation metrics are not fitted on themselves)."""

    spec: EnsembleSpec
    candidate_auc: dict[str, float]
    val_probs: np.ndarray
    gap_se: dict[str, float]


def fit(member_probs: np.ndarray, labels: np.ndarray, groups: np.ndarray, positive: int,
        combiners: tuple[str, ...] = COMBINERS, temperature_scaling: bool = True, seed: int = 0,
        boosting_weights: list[float] | None = None, class_bias: bool = True,
        noise_se: float = 0.0, resamples: int = 1000) -> FittedEnsemble:
    """Choose the combiner by ``metrics.simplest_within_noise`` (candidates simplest first, as
    ``COMBINERS`` orders them): the best validation AUC (stacking judged on its out-of-fold
    predictions), or a simpler combiner within ``noise_se`` standard errors of it (``resamples``
    patient-level bootstrap resamples of validation; 0: the best). Then fit the calibration
    (temperature, and ``class_bias``) and operating point on validation. ``boosted`` is a candidate
    only for a boosted run (``boosting_weights``, one per member, not all zero)."""
    candidates: dict[str, tuple[EnsembleSpec, np.ndarray]] = {}
    for name in sorted(combiners, key=COMBINERS.index):
        if name == "stacking":
            stacked = fit_stacking(member_probs, labels, groups, seed)
            if stacked is None:
                continue
            oof, coef, intercept = stacked
            candidates[name] = (EnsembleSpec(combiner=name, stack_coef=coef, stack_intercept=intercept), oof)
            continue
        if name == "boosted" and (boosting_weights is None or sum(boosting_weights) <= 0):
            continue
        spec = EnsembleSpec(combiner=name, weights=list(boosting_weights) if name == "boosted" else None)
        if name == "weighted":
            spec.weights = validation_weights(member_probs, labels, positive)
        candidates[name] = (spec, combine(member_probs, spec))
    scores = {name: metrics.auc(p, labels, positive) for name, (_, p) in candidates.items()}
    weights = metrics.patient_weights(groups, resamples, seed)
    best, gap_se = metrics.simplest_within_noise(
        {name: (metrics.rank_score(auc),) for name, auc in scores.items()},
        {name: metrics.resampled_auc(p, labels, weights, positive) for name, (_, p) in candidates.items()}, noise_se)
    spec, val_probs = candidates[best]
    spec.positive = positive
    if temperature_scaling and spec.combiner != "vote":
        spec.temperature, spec.bias = fit_calibration(val_probs, labels, class_bias)
        val_probs = calibrate(val_probs, spec.temperature, spec.bias)
    spec.threshold = metrics.operating_point(val_probs, labels, positive)
    return FittedEnsemble(spec, scores, val_probs, {name: round(se, 6) for name, se in gap_se.items()})
