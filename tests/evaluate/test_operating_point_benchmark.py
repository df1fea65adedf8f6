"""benchmarks/operating_point.py's comparison: every rule is scored on the half it was not fitted on."""

from __future__ import annotations

import numpy as np

from benchmarks.operating_point import RULES, compare, held_out


def test_held_out_scores_accuracy_and_balanced_accuracy_at_the_threshold():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    labels = np.array([0, 1, 1, 1])
    assert held_out(probs, labels, 1, 0.5) == (0.75, (2 / 3 + 1) / 2)
    assert held_out(probs, labels, 1, 0.3) == (1.0, 1.0)


def test_rules_are_compared_on_halves_they_were_not_fitted_on():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], [60, 140])
    score = labels * 1.5 + rng.normal(0, 1, (3, len(labels)))  # three noisy members
    positive = 1 / (1 + np.exp(-score))
    member_probs = np.stack([1 - positive, positive], axis=2)
    patients = np.arange(len(labels)) // 2  # two images per patient: halves must keep them together
    scores = compare(member_probs, labels, 1, patients, ("mean", "weighted"), repeats=5)
    assert set(scores) == set(RULES)
    for v in scores.values():
        assert v.shape == (5, 2) and np.all((v > 0.5) & (v < 1.0))  # held out: better than chance, not perfect
    assert not np.allclose(scores["youden (evaluation's)"][:, 0], scores["youden (evaluation's)"][0, 0])  # halvings differ
