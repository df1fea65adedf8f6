"""Which calibration generalises: none, a temperature, or a temperature and a per-class bias,
judged on the VALIDATION split only, cross-fitted by patient (each fold's calibration is fitted on the
other folds and scored on it), for trained runs of the benchmark suite.

    python benchmarks/calibration.py RUN_URI [RUN_URI ...]

Prints, per run, the cross-fitted validation negative log-likelihood and accuracy at p >= 0.5 of
each calibration, applied to the combiner that run's evaluation chose. No test label is read.
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from tasks.core import metrics
from tasks.data.samples import Streamed
from tasks.evaluate.evaluation import choose_tta
from tasks.model import ensemble, ensemble_fit
from tasks.model.config import EvaluationConfig
from tasks.model.runs import load
from tasks.model.store import EnsembleModel

CALIBRATIONS = {"none": None, "temperature": False, "temperature + class bias": True}


def validation_split(run_uri: str) -> tuple[EnsembleModel, Streamed, int, EvaluationConfig]:
    """A trained run's model, its validation split (with patients), positive class and evaluation config."""
    run = load(run_uri)
    info, evaluation = run.info, run.config.evaluation
    positive = metrics.positive_index(info.classes, evaluation.positive_class)
    val = Streamed(info.dataset, "val", info.classes, info.version, patients=True)
    return EnsembleModel.load(info.folder.model.uri), val, positive, evaluation


def validation_members(run_uri: str) -> tuple[np.ndarray, np.ndarray, int, np.ndarray, EvaluationConfig]:
    """The members' validation probabilities (with the run's test-time views rule), labels, positive
    class, patients, and the run's evaluation config."""
    model, val, positive, evaluation = validation_split(run_uri)
    member_probs = choose_tta(model, val, evaluation, positive).member_probs
    return member_probs, val.labels, positive, np.asarray(val.patients), evaluation


def validation_probs(run_uri: str) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    """The chosen combiner's uncalibrated validation probabilities, labels, positive class, patients."""
    member_probs, labels, positive, patients, evaluation = validation_members(run_uri)
    fitted = ensemble_fit.fit(member_probs, labels, patients, positive, tuple(evaluation.combiners),
                          temperature_scaling=False, seed=evaluation.seed,
                          noise_se=evaluation.combiner_noise_se)
    return fitted.val_probs, labels, positive, patients


def cross_fitted(probs: np.ndarray, labels: np.ndarray, patients: np.ndarray, bias: bool | None,
                 positive: int, folds: int = 5) -> dict[str, float]:
    out = np.zeros_like(probs)
    for train, held in StratifiedGroupKFold(folds, shuffle=True, random_state=0).split(probs, labels, patients):
        if bias is None:
            out[held] = probs[held]
        else:
            temperature, shift = ensemble_fit.fit_calibration(probs[train], labels[train], bias)
            out[held] = ensemble.calibrate(probs[held], temperature, shift)
    predicted = metrics.predict_labels(out, 0.5, positive)
    return {"nll": metrics.log_loss(out, labels), "acc@0.5": float((predicted == labels).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+")
    args = parser.parse_args()
    for run_uri in args.runs:
        probs, labels, positive, patients = validation_probs(run_uri)
        print(f"{run_uri}: {len(labels)} validation images, positive share {np.mean(labels == positive):.3f}")
        for name, bias in CALIBRATIONS.items():
            scores = cross_fitted(probs, labels, patients, bias, positive)
            print(f"  {name:<26} cross-fitted val NLL {scores['nll']:.4f}  ACC@0.5 {scores['acc@0.5']:.4f}")


if __name__ == "__main__":
    main()
