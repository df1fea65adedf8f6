"""Which combiner rule generalises, judged on the VALIDATION split only: repeated patient-grouped,
class-stratified halvings of validation; on one half the combiner is chosen as evaluation chooses it,
by each rule, and the chosen combiner (fitted on that half) is scored on the other half.

    python benchmarks/combiner.py [--repeats N] [--noise-se S ...] RUN_URI [RUN_URI ...]

Rules: ``combiner_noise_se`` S for each S given (0: the best validation AUC at any margin; 1: the
simplest combiner within one standard error of the best, evaluation's default). Prints, per run and
rule, the held-out AUC (mean over the halvings), its mean paired difference to the first rule's with
the spread of that difference, and how often each combiner was chosen. No test label is read.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.calibration import validation_members  # noqa: E402
from benchmarks.operating_point import halves  # noqa: E402
from tasks.core import metrics  # noqa: E402
from tasks.model import ensemble, ensemble_fit  # noqa: E402


def compare(member_probs: np.ndarray, labels: np.ndarray, positive: int, patients: np.ndarray,
            combiners: tuple[str, ...], repeats: int, rules: list[float],
            resamples: int = 1000) -> dict[float, tuple[np.ndarray, Counter]]:
    """Per rule (a ``noise_se``): the held-out AUC of each halving's chosen combiner, and the choices."""
    out: dict[float, tuple[list, Counter]] = {rule: ([], Counter()) for rule in rules}
    for repeat in range(repeats):
        fit_half, score_half = halves(labels, patients, repeat)
        for rule in rules:
            fitted = ensemble_fit.fit(member_probs[:, fit_half], labels[fit_half], patients[fit_half], positive,
                                      combiners, seed=repeat, noise_se=rule, resamples=resamples)
            held = ensemble.combine(member_probs[:, score_half], fitted.spec)
            out[rule][0].append(metrics.auc(held, labels[score_half], positive))
            out[rule][1][fitted.spec.combiner] += 1
    return {rule: (np.asarray(aucs), chosen) for rule, (aucs, chosen) in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--repeats", type=int, default=100, help="halvings of validation per run")
    parser.add_argument("--noise-se", type=float, nargs="+", default=[0.0, 1.0], help="the rules compared")
    args = parser.parse_args()
    for run_uri in args.runs:
        member_probs, labels, positive, patients, evaluation = validation_members(run_uri)
        print(f"{run_uri}: {len(labels)} validation images, {member_probs.shape[0]} members")
        results = compare(member_probs, labels, positive, patients, tuple(evaluation.combiners), args.repeats,
                          args.noise_se, evaluation.bootstrap_resamples)
        first = results[args.noise_se[0]][0]
        for rule, (aucs, chosen) in results.items():
            gap = aucs - first
            print(f"  noise_se {rule:<4g} held-out AUC {np.nanmean(aucs):.4f}  vs noise_se {args.noise_se[0]:g}: "
                  f"{np.nanmean(gap):+.5f} (sd {np.nanstd(gap):.5f}, better in {int(np.sum(gap > 0))}, worse in "
                  f"{int(np.sum(gap < 0))} of {len(gap)})  chosen: {dict(chosen.most_common())}")


if __name__ == "__main__":
    main()
