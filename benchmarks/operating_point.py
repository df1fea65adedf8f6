"""Which operating-point rule generalises, judged on the VALIDATION split only: repeated patient-grouped,
class-stratified halvings of validation; on one half the whole ensemble is fitted as evaluation fits it
(combiner, calibration, threshold), and each rule's threshold is scored on the other half.

    python benchmarks/operating_point.py [--repeats N] RUN_URI [RUN_URI ...]

Rules: Youden's J on the fitting half (evaluation's rule); the median of Youden's J thresholds over
bootstrap resamples of that half (a steadier choice on a small split); p >= 0.5 after the calibration
(the likelier class at validation's prevalence). Prints each rule's held-out accuracy and balanced
accuracy (mean and spread over the halvings) per run. No test label is read.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

import numpy as np
from sklearn.metrics import confusion_matrix
from sklearn.model_selection import StratifiedGroupKFold

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.calibration import validation_members  # noqa: E402
from tasks.core import metrics  # noqa: E402
from tasks.model import ensemble, ensemble_fit  # noqa: E402

BOOTSTRAPS = 200
Rule = Callable[[np.ndarray, np.ndarray, int, np.random.Generator], float]


def bootstrap_median(probs: np.ndarray, labels: np.ndarray, positive: int, rng: np.random.Generator) -> float:
    """Median of Youden's J thresholds over bootstrap resamples (those holding both classes)."""
    cuts = []
    for _ in range(BOOTSTRAPS):
        draw = rng.integers(0, len(labels), len(labels))
        if len(np.unique(labels[draw])) == 2:
            cuts.append(metrics.operating_point(probs[draw], labels[draw], positive))
    return float(np.median(cuts))


RULES: dict[str, Rule] = {
    "youden (evaluation's)": lambda p, y, pos, rng: metrics.operating_point(p, y, pos),
    "bootstrap median youden": bootstrap_median,
    "0.5 after calibration": lambda p, y, pos, rng: 0.5,
}


def held_out(probs: np.ndarray, labels: np.ndarray, positive: int, threshold: float) -> tuple[float, float]:
    """Accuracy and balanced accuracy at ``threshold``, as evaluation reads them off the confusion matrix."""
    cm = confusion_matrix(labels, metrics.predict_labels(probs, threshold, positive), labels=[0, 1])
    scores = metrics.from_confusion(cm, positive)
    return scores["accuracy"], scores["balanced_accuracy"]


def halves(labels: np.ndarray, patients: np.ndarray, repeat: int) -> tuple[np.ndarray, np.ndarray]:
    """Halving ``repeat`` of validation, grouped by patient and stratified by class: (fitting half, scored half)."""
    return next(StratifiedGroupKFold(2, shuffle=True, random_state=repeat).split(labels, labels, patients))


def compare(member_probs: np.ndarray, labels: np.ndarray, positive: int, patients: np.ndarray,
            combiners: tuple[str, ...], repeats: int, noise_se: float = 0.0) -> dict[str, np.ndarray]:
    """Per rule, (repeats x 2) held-out (accuracy, balanced accuracy)."""
    rng = np.random.default_rng(0)
    scores: dict[str, list] = {name: [] for name in RULES}
    for repeat in range(repeats):
        fit_half, score_half = halves(labels, patients, repeat)
        fitted = ensemble_fit.fit(member_probs[:, fit_half], labels[fit_half], patients[fit_half], positive, combiners,
                                   noise_se=noise_se)
        spec = fitted.spec
        scored = ensemble.calibrate(ensemble.combine(member_probs[:, score_half], spec), spec.temperature, spec.bias)
        for name, rule in RULES.items():
            threshold = rule(fitted.val_probs, labels[fit_half], positive, rng)
            scores[name].append(held_out(scored, labels[score_half], positive, threshold))
    return {name: np.asarray(v) for name, v in scores.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--repeats", type=int, default=100, help="halvings of validation per run")
    args = parser.parse_args()
    for run_uri in args.runs:
        member_probs, labels, positive, patients, evaluation = validation_members(run_uri)
        if member_probs.shape[2] != 2:
            print(f"{run_uri}: not a binary task, no operating point")
            continue
        print(f"{run_uri}: {len(labels)} validation images, {int(np.sum(labels == positive))} positive")
        for name, v in compare(member_probs, labels, positive, patients, tuple(evaluation.combiners), args.repeats,
                                     evaluation.combiner_noise_se).items():
            print(f"  {name:<25} held-out ACC {v[:, 0].mean():.4f} (sd {v[:, 0].std():.4f})  "
                  f"balanced ACC {v[:, 1].mean():.4f} (sd {v[:, 1].std():.4f})")


if __name__ == "__main__":
    main()
