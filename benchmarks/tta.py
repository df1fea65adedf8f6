"""Which test-time views help, judged on the VALIDATION split only: for trained runs, the members'
mean validation AUC and log-loss with each set of views (the plain input, its left-right flip, centre
zooms by several factors), and the members' own AUCs averaged.

    python benchmarks/tta.py RUN_URI [RUN_URI ...]

The log-loss is before calibration (evaluation fits a temperature and bias afterwards), so AUC is the
figure to compare. Last, what evaluation's rule (``choose_tta``: the fewest views within
``tta_noise_se`` standard errors of the best set) chooses for the run. No test label is read.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.calibration import validation_split  # noqa: E402
from tasks.core import metrics  # noqa: E402
from tasks.evaluate.evaluation import choose_tta  # noqa: E402
from tasks.model.views import View  # noqa: E402
from tasks.model.views import views as views_of  # noqa: E402

ZOOMS = (1.05, 1.1, 1.15, 1.2, 1.3)
SETS = {"plain": [View()], "flip": [View(), View(True)],
        **{f"plain + zoom x{z}": [View(), View(False, z)] for z in ZOOMS},
        "zoom x1.1 alone": [View(False, 1.1)], "flip + zoom x1.1": [View(), View(True), View(False, 1.1), View(True, 1.1)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+")
    args = parser.parse_args()
    for run_uri in args.runs:
        model, val, positive, evaluation = validation_split(run_uri)
        wanted = [v for views in SETS.values() for v in views] + views_of(True, evaluation.tta_zoom_factor)  # the rule's too
        per_view = model.view_probs(val.batches(), list(dict.fromkeys(wanted)))
        print(f"{run_uri}: {len(val)} validation {'series' if model.card.preprocessing.volumes else 'images'}, "
              f"{len(model.networks)} members")
        for name, views in SETS.items():
            members = np.mean([per_view[v] for v in views], axis=0)
            mean = members.mean(axis=0)
            own = np.mean([metrics.auc(m, val.labels, positive) for m in members])
            print(f"  {name:<18} members' mean: val AUC {metrics.auc(mean, val.labels, positive):.5f}, "
                  f"log-loss {metrics.log_loss(mean, val.labels):.4f}; members' own val AUC, averaged {own:.5f}")
        rule = choose_tta(model, val, evaluation, positive, predicted=per_view)
        print(f"  evaluation's rule (tta_noise_se {evaluation.tta_noise_se}) keeps hflip={rule.hflip} zoom={rule.zoom}; "
              + ", ".join(f"{name} {auc:.5f} (gap SE {rule.gap_se[name]:.5f})" for name, auc in rule.val_auc.items()))


if __name__ == "__main__":
    main()
