"""benchmarks/combiner.py's comparison: each rule chooses on one half of validation and is scored on the other."""

from __future__ import annotations

import numpy as np

from benchmarks.combiner import compare


def test_rules_choose_on_one_half_and_are_scored_on_the_other():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], [80, 120])
    score = labels * 1.5 + rng.normal(0, 1, (3, len(labels)))  # three noisy members of equal skill
    positive = 1 / (1 + np.exp(-score))
    member_probs = np.stack([1 - positive, positive], axis=2)
    patients = np.arange(len(labels)) // 2  # two images per patient: halves must keep them together
    results = compare(member_probs, labels, 1, patients, ("mean", "weighted", "stacking"), repeats=6,
                      rules=[0.0, 1.0], resamples=200)
    assert set(results) == {0.0, 1.0}
    for aucs, chosen in results.values():
        assert aucs.shape == (6,) and np.all((aucs > 0.6) & (aucs < 1.0))  # held out: better than chance, not perfect
        assert sum(chosen.values()) == 6 and set(chosen) <= {"mean", "weighted", "stacking"}
        assert len(set(np.round(aucs, 6))) > 1  # the halvings differ
    assert results[1.0][1]["mean"] >= results[0.0][1]["mean"]  # one standard error keeps the simplest at least as often
