"""Clinical metrics of predicted class probabilities, with patient-level bootstrap confidence intervals.

Metric values come from scikit-learn (AUC, confusion matrix, Brier score) and torchmetrics
(expected calibration error); sensitivity, specificity, accuracy, balanced accuracy and F1 are read
off scikit-learn's confusion matrix. A bootstrap resample draws *patients* with replacement and
weights each image by its patient's multiplicity, so images of one patient move together.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.metrics import brier_score_loss, confusion_matrix, roc_auc_score, roc_curve

ECE_BINS = 10
POINT_METRICS = ("auc", "brier", "ece")
THRESHOLD_METRICS = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "f1")
NEGATIVE_NAMES = ("normal", "negative", "benign", "healthy", "no", "0", "false", "absent")


def positive_index(classes: list[str], positive: str | None = None) -> int:
    """Index of the positive class of a binary task: ``positive`` if given, else the class whose
    name is not a usual negative name ("normal", "negative", ...), else the second class."""
    if positive is not None:
        if positive not in classes:
            raise ValueError(f"positive class {positive!r} is not one of {classes}")
        return classes.index(positive)
    negatives = [i for i, c in enumerate(classes) if c.lower() in NEGATIVE_NAMES]
    return 1 - negatives[0] if len(classes) == 2 and len(negatives) == 1 else 1


def predict_labels(probs: np.ndarray, threshold: float | None, positive: int) -> np.ndarray:
    """Class predictions: the positive class when its probability reaches ``threshold`` (binary),
    otherwise the most probable class."""
    if threshold is None or probs.shape[1] != 2:
        return probs.argmax(axis=1)
    return np.where(probs[:, positive] >= threshold, positive, 1 - positive)


def operating_point(probs: np.ndarray, labels: np.ndarray, positive: int) -> float:
    """The threshold on the positive class's probability that maximises Youden's J (sensitivity +
    specificity - 1) on these (validation) predictions, placed midway between the two scores that
    bound the best cut (not on a training score); 0.5 for multi-class or one-class inputs."""
    if probs.shape[1] != 2 or len(np.unique(labels)) < 2:
        return 0.5
    fpr, tpr, thresholds = roc_curve(labels == positive, probs[:, positive], drop_intermediate=False)
    best = int(np.argmax(tpr - fpr))
    upper = min(float(thresholds[best]), 1.0)
    lower = float(thresholds[best + 1]) if best + 1 < len(thresholds) else 0.0
    return (upper + lower) / 2


def auc(probs: np.ndarray, labels: np.ndarray, positive: int, weight: np.ndarray | None = None) -> float:
    """ROC AUC of the positive class (binary) or one-vs-rest macro; NaN when a class is missing."""
    if len(np.unique(labels[weight > 0] if weight is not None else labels)) < probs.shape[1]:
        return float("nan")
    if probs.shape[1] == 2:
        return float(roc_auc_score(labels == positive, probs[:, positive], sample_weight=weight))
    return float(roc_auc_score(labels, probs, multi_class="ovr", labels=list(range(probs.shape[1])), sample_weight=weight))


def log_loss(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the true classes (unweighted)."""
    if not len(labels):
        return float("nan")
    return float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-7, 1)).mean())


def _ece(probs: np.ndarray, labels: np.ndarray, positive: int) -> float:
    # imported here: a training worker scores AUC and loss only, and torchmetrics takes 0.7 s to import
    from torchmetrics.functional.classification import binary_calibration_error, multiclass_calibration_error

    p, y = torch.from_numpy(np.ascontiguousarray(probs, dtype=np.float32)), torch.from_numpy(labels)
    if probs.shape[1] == 2:
        return float(binary_calibration_error(p[:, positive].contiguous(), (y == positive).long(), n_bins=ECE_BINS))
    return float(multiclass_calibration_error(p, y, num_classes=probs.shape[1], n_bins=ECE_BINS))


def _brier(probs: np.ndarray, labels: np.ndarray, positive: int, weight: np.ndarray | None) -> float:
    if probs.shape[1] == 2:
        return float(brier_score_loss(labels == positive, probs[:, positive], sample_weight=weight))
    onehot = np.eye(probs.shape[1])[labels]
    return float(np.average(((probs - onehot) ** 2).sum(axis=1), weights=weight))


def from_confusion(cm: np.ndarray, positive: int) -> dict[str, float]:
    """Threshold metrics from a confusion matrix (rows true, columns predicted). Binary:
    sensitivity/specificity of the positive class; multi-class: macro averages."""
    cm = cm.astype(np.float64)
    total, diag = cm.sum(), np.diag(cm)
    recall = np.divide(diag, cm.sum(axis=1), out=np.full(len(cm), np.nan), where=cm.sum(axis=1) > 0)
    precision = np.divide(diag, cm.sum(axis=0), out=np.zeros(len(cm)), where=cm.sum(axis=0) > 0)
    specificity = np.array([(total - cm[i].sum() - cm[:, i].sum() + cm[i, i]) / max(total - cm[i].sum(), 1e-12)
                            for i in range(len(cm))])
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(len(cm)), where=(precision + recall) > 0)
    if len(cm) == 2:
        sens, spec, f1_value = recall[positive], specificity[positive], f1[positive]
    else:
        sens, spec, f1_value = np.nanmean(recall), float(np.mean(specificity)), float(np.mean(f1))
    return {"accuracy": float(diag.sum() / total) if total else float("nan"),
            "balanced_accuracy": float(np.nanmean(recall)), "sensitivity": float(sens),
            "specificity": float(spec), "f1": float(f1_value)}


def compute(probs: np.ndarray, labels: np.ndarray, positive: int, threshold: float | None = None,
            weight: np.ndarray | None = None, with_ece: bool = True) -> dict:
    """Every metric at 0.5 (``*_at_0.5``) and at ``threshold`` (``*_at_op``), plus AUC, Brier, ECE
    and the confusion matrix at the operating point."""
    n = probs.shape[1]
    out: dict = {"auc": auc(probs, labels, positive, weight), "brier": _brier(probs, labels, positive, weight)}
    if with_ece:
        out["ece"] = _ece(probs, labels, positive)
    for name, t in (("0.5", 0.5), ("op", threshold if threshold is not None else 0.5)):
        cm = confusion_matrix(labels, predict_labels(probs, t, positive), labels=list(range(n)), sample_weight=weight)
        out.update({f"{k}_at_{name}": v for k, v in from_confusion(cm, positive).items()})
        if name == "op":
            out["confusion_matrix"] = cm.astype(int).tolist() if weight is None else cm.tolist()
    out["threshold"] = threshold if threshold is not None else 0.5
    return out


def patient_weights(groups: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """``resamples`` x N image weights: each resample draws the patients with replacement, and an
    image counts as many times as its patient was drawn."""
    _, group_index = np.unique(groups, return_inverse=True)
    n_groups = group_index.max() + 1 if len(group_index) else 0
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_groups, size=(resamples, n_groups))
    counts = np.stack([np.bincount(d, minlength=n_groups) for d in draws])
    return counts[:, group_index].astype(np.float64)


def _summed(weights: np.ndarray, index: np.ndarray, size: int) -> np.ndarray:
    """R x ``size``: each resample's (row of ``weights``) weight summed over the images of each value of
    ``index`` (N ints in ``[0, size)``)."""
    order = np.argsort(index, kind="stable")
    present, starts = np.unique(index[order], return_index=True)
    out = np.zeros((len(weights), size))
    if len(order):
        out[:, present] = np.add.reduceat(weights[:, order], starts, axis=1)
    return out


def _ranked(scores: np.ndarray, is_positive: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each resample's positive and negative weight at each distinct score, scores ascending (R x U each)."""
    distinct, inverse = np.unique(scores, return_inverse=True)
    return (_summed(weights * is_positive, inverse, len(distinct)),
            _summed(weights * ~is_positive, inverse, len(distinct)))


def _binary_auc(scores: np.ndarray, is_positive: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Each resample's weighted ROC AUC (the Mann-Whitney form of the ROC's area, ties counted half:
    what ``roc_auc_score`` gives with ``sample_weight``); NaN where a class has no weight."""
    pos, neg = _ranked(scores, is_positive, weights)
    below = np.cumsum(neg, axis=1) - neg
    pairs = pos.sum(axis=1) * neg.sum(axis=1)
    return np.where(pairs > 0, (pos * (below + neg / 2)).sum(axis=1) / np.where(pairs > 0, pairs, 1), np.nan)


def resampled_auc(probs: np.ndarray, labels: np.ndarray, weights: np.ndarray, positive: int) -> np.ndarray:
    """``auc`` of each resample (row) of ``weights``: binary, or the one-vs-rest macro mean; NaN
    where a class has no weight."""
    labels = np.asarray(labels)
    if probs.shape[1] == 2:
        return _binary_auc(probs[:, positive], labels == positive, weights)
    return np.stack([_binary_auc(probs[:, c], labels == c, weights) for c in range(probs.shape[1])]).mean(axis=0)


def rank_score(value: float) -> float:
    """A score as ``simplest_within_noise`` ranks it: rounded to 6 places (rounding noise is a tie), NaN
    (no AUC: a class missing) as -1."""
    return round(float(np.nan_to_num(value, nan=-1.0)), 6)


def simplest_within_noise(scores: dict[Any, tuple[float, ...]], resampled_auc: dict[Any, np.ndarray],
                          noise_se: float) -> tuple[Any, dict[Any, float]]:
    """The one-standard-error rule of model selection, paired: of candidates given simplest first, the
    best by ``scores`` (AUC first, then the rest of the tuple; a tie keeps the simpler), or the first
    whose AUC is within ``noise_se`` standard errors of the best's, the error being that of their AUCs'
    difference over the same bootstrap resamples (``resampled_auc``). Also each candidate's standard
    error of its gap to the best. ``noise_se`` 0: the best."""
    order = list(scores)
    best = max(order, key=lambda c: (scores[c], -order.index(c)))
    gaps = {c: resampled_auc[best] - resampled_auc[c] for c in order}  # NaN in a resample without both classes
    gap_se = {c: float(np.std(g[np.isfinite(g)])) if np.isfinite(g).any() else 0.0 for c, g in gaps.items()}
    chosen = next(c for c in order if c == best or (noise_se > 0 and scores[best][0] - scores[c][0] <= noise_se * gap_se[c]))
    return chosen, gap_se


def _resampled_ece(probs: np.ndarray, labels: np.ndarray, positive: int, weights: np.ndarray) -> np.ndarray:
    """Each resample's expected calibration error, binned as torchmetrics bins it (``ECE_BINS`` bins
    of the top-1, or binary positive, confidence; an image counts its weight)."""
    probs = probs.astype(np.float32)
    if probs.shape[1] == 2:
        confidence, correct = probs[:, positive], labels == positive
    else:
        confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
    edges = torch.linspace(0, 1, ECE_BINS + 1, dtype=torch.float32).numpy()
    bins = np.searchsorted(edges, confidence, side="right") - 1
    gap = _summed(weights * (correct - confidence.astype(np.float64)), bins, ECE_BINS + 1)
    return np.abs(gap).sum(axis=1) / weights.sum(axis=1)


def resampled(probs: np.ndarray, labels: np.ndarray, weights: np.ndarray, positive: int,
              threshold: float | None) -> dict[str, np.ndarray]:
    """Every scalar metric of ``compute`` for each resample (row) of ``weights`` at once: the same
    definitions, summed over the resamples' weights instead of called once per resample."""
    n = probs.shape[1]
    labels = np.asarray(labels)
    values = {"auc": resampled_auc(probs, labels, weights, positive)}
    if n == 2:
        error = (probs[:, positive] - (labels == positive)) ** 2
    else:
        error = ((probs - np.eye(n)[labels]) ** 2).sum(axis=1)
    values["brier"] = weights @ error / weights.sum(axis=1)
    values["ece"] = _resampled_ece(probs, labels, positive, weights)
    for name, t in (("0.5", 0.5), ("op", threshold if threshold is not None else 0.5)):
        cells = _summed(weights, labels * n + predict_labels(probs, t, positive), n * n).reshape(-1, n, n)
        rows = [from_confusion(cm, positive) for cm in cells]
        values.update({f"{k}_at_{name}": np.array([row[k] for row in rows]) for k in rows[0]} if rows else {})
    return values


def bootstrap(probs: np.ndarray, labels: np.ndarray, weights: np.ndarray, positive: int,
              threshold: float | None, alpha: float = 0.05) -> dict[str, list[float]]:
    """Percentile (1 - ``alpha``) confidence interval of every scalar metric over the resamples in
    ``weights`` (from ``patient_weights``)."""
    return {k: [float(np.nanpercentile(v, 100 * alpha / 2)), float(np.nanpercentile(v, 100 * (1 - alpha / 2)))]
            for k, v in resampled(probs, labels, weights, positive, threshold).items() if not np.all(np.isnan(v))}


def roc_band(probs: np.ndarray, labels: np.ndarray, weights: np.ndarray, positive: int,
             grid: int = 101) -> dict[str, list[float]]:
    """The ROC curve of the positive class and its bootstrap 95% band on a fixed FPR grid."""
    fpr_grid = np.linspace(0, 1, grid)
    y = labels == positive
    fpr, tpr, _ = roc_curve(y, probs[:, positive])
    pos, neg = (np.cumsum(w[:, ::-1], axis=1) for w in _ranked(probs[:, positive], y, weights))  # thresholds descending
    curves = [np.interp(fpr_grid, np.r_[0, f / f[-1]], np.r_[0, t / t[-1]])
              for t, f in zip(pos, neg, strict=True) if t[-1] > 0 and f[-1] > 0]
    band = np.array(curves) if curves else np.zeros((1, grid))
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "grid": fpr_grid.tolist(),
            "low": np.percentile(band, 2.5, axis=0).tolist(), "high": np.percentile(band, 97.5, axis=0).tolist()}
