"""Ensemble combination math: each combiner, temperature scaling, cross-fitted stacking, choice on validation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax
from sklearn.linear_model import LogisticRegression

from tasks.core import metrics
from tasks.model import ensemble, ensemble_fit
from tasks.model.ensemble import EnsembleSpec

# 3 members x 4 images x 2 classes
MEMBERS = np.array([
    [[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.6, 0.4]],
    [[0.8, 0.2], [0.7, 0.3], [0.1, 0.9], [0.4, 0.6]],
    [[0.6, 0.4], [0.2, 0.8], [0.4, 0.6], [0.3, 0.7]],
])


def _task(n_patients: int = 60, per_patient: int = 2, seed: int = 0):
    """Members of unequal skill on a binary task; member 2 is noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n_patients * per_patient)
    groups = np.repeat(np.arange(n_patients), per_patient)
    logits = [2.5 * (labels - 0.5) + rng.normal(0, s, len(labels)) for s in (0.6, 1.2)] + [rng.normal(0, 1, len(labels))]
    members = np.stack([softmax(np.stack([-z, z], 1), axis=1) for z in logits])
    return members, labels, groups


def test_mean_is_the_average_probability():
    out = ensemble.combine(MEMBERS, EnsembleSpec(combiner="mean"))
    np.testing.assert_allclose(out, MEMBERS.mean(axis=0))


def test_weighted_uses_normalised_weights():
    out = ensemble.combine(MEMBERS, EnsembleSpec(combiner="weighted", weights=[2, 1, 1]))
    np.testing.assert_allclose(out, (2 * MEMBERS[0] + MEMBERS[1] + MEMBERS[2]) / 4)


def test_vote_counts_each_members_top_class():
    out = ensemble.combine(MEMBERS, EnsembleSpec(combiner="vote"))
    np.testing.assert_allclose(out[:, 1], [0, 2 / 3, 1, 2 / 3])
    np.testing.assert_allclose(out.sum(axis=1), 1)


def test_stacking_applies_the_fitted_logistic_regression():
    members, labels, _ = _task()
    features = np.log(members).transpose(1, 0, 2).reshape(len(labels), -1)
    learner = LogisticRegression(max_iter=1000).fit(features, labels)
    spec = EnsembleSpec(combiner="stacking", stack_coef=learner.coef_.tolist(), stack_intercept=learner.intercept_.tolist())
    np.testing.assert_allclose(ensemble.combine(members, spec), learner.predict_proba(features), atol=1e-10)


def test_temperature_divides_log_probabilities():
    out = ensemble.combine(MEMBERS, EnsembleSpec(combiner="mean", temperature=2.0))
    mean = MEMBERS.mean(axis=0)
    np.testing.assert_allclose(out, softmax(np.log(mean) / 2.0, axis=1))


def test_fit_temperature_recovers_the_temperature_that_made_the_data():
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 2, (4000, 2))
    labels = np.array([rng.choice(2, p=p) for p in softmax(logits, axis=1)])
    overconfident = softmax(2.0 * logits, axis=1)  # true temperature 2
    temperature, bias = ensemble_fit.fit_calibration(overconfident, labels, bias=False)
    assert temperature == pytest.approx(2.0, rel=0.1) and bias is None


def test_the_class_bias_undoes_a_prior_shift_and_makes_half_the_accuracy_optimal_cut():
    rng = np.random.default_rng(4)
    logits = np.c_[np.zeros(6000), rng.normal(-2.5, 2, 6000)]  # a rare positive class
    labels = np.array([rng.choice(2, p=p) for p in softmax(logits, axis=1)])
    shifted = softmax(logits + [0.0, 1.5], axis=1)  # what a class-weighted loss does: rare class inflated
    temperature, bias = ensemble_fit.fit_calibration(shifted, labels)
    assert temperature == pytest.approx(1.0, rel=0.1) and bias[0] == 0 and bias[1] == pytest.approx(-1.5, abs=0.2)
    fixed = ensemble.combine(shifted[None], EnsembleSpec(temperature=temperature, bias=bias))
    accuracy = {name: ((p[:, 1] >= 0.5) == labels).mean() for name, p in (("shifted", shifted), ("fixed", fixed))}
    assert accuracy["fixed"] > accuracy["shifted"] + 0.01
    temperature_only = ensemble_fit.fit_calibration(shifted, labels, bias=False)[0]
    assert metrics.log_loss(fixed, labels) < metrics.log_loss(
        ensemble.calibrate(shifted, temperature_only), labels)


def test_cross_fitted_stacking_predicts_each_patient_with_a_model_that_never_saw_it():
    members, labels, groups = _task()
    oof, coef, intercept = ensemble_fit.fit_stacking(members, labels, groups, seed=0)
    full = ensemble.combine(members, EnsembleSpec(combiner="stacking", stack_coef=coef, stack_intercept=intercept))
    assert oof.shape == full.shape
    assert not np.allclose(oof, full)  # out-of-fold, not in-sample
    assert ensemble_fit.fit_stacking(members[:, :3], labels[:3], groups[:3]) is None  # too small to cross-fit


def test_fit_picks_a_combiner_on_validation_and_downweights_the_noise_member():
    members, labels, groups = _task()
    fitted = ensemble_fit.fit(members, labels, groups, positive=1)
    spec, scores, val_probs = fitted.spec, fitted.candidate_auc, fitted.val_probs
    assert set(scores) == set(ensemble.COMBINERS) - {"boosted"}  # boosted: only for a boosted run
    assert scores[spec.combiner] == max(scores.values())
    assert val_probs.shape == (len(labels), 2)
    weights = ensemble_fit.validation_weights(members, labels, positive=1)
    assert weights[0] > weights[1] > weights[2] and sum(weights) == pytest.approx(1)
    assert 0 < spec.threshold < 1 and 0.25 <= spec.temperature <= 8


def test_a_combiner_simpler_than_the_best_wins_unless_the_best_gains_more_than_validations_noise():
    """Members of equal skill: weighting or stacking them can only fit validation's noise, so the mean,
    the simplest combiner, is kept unless noise_se is 0 and another combiner scored a hair better. A
    skilled member beside pure noise gives the weighted combiner a gain beyond the noise."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    groups = np.arange(len(labels))
    equal = np.stack([softmax(np.stack([-z, z], 1), axis=1)
                      for z in (1.2 * (labels - 0.5) + rng.normal(0, 1, (3, len(labels))))])
    best = ensemble_fit.fit(equal, labels, groups, positive=1, combiners=("mean", "weighted", "stacking"), noise_se=0.0)
    simplest = ensemble_fit.fit(equal, labels, groups, positive=1, combiners=("mean", "weighted", "stacking"), noise_se=1.0)
    scores = simplest.candidate_auc
    assert best.spec.combiner != "mean" and scores[best.spec.combiner] > scores["mean"]  # a lucky gain...
    assert scores[best.spec.combiner] - scores["mean"] <= simplest.gap_se["mean"]  # ...within one standard error
    assert simplest.spec.combiner == "mean" and simplest.gap_se[best.spec.combiner] == 0.0
    noisy = np.concatenate([equal[:1], np.stack([softmax(np.stack([-z, z], 1), axis=1)
                                                 for z in rng.normal(0, 1, (4, len(labels)))])])
    assert ensemble_fit.fit(noisy, labels, groups, positive=1, combiners=("weighted", "mean"),
                            noise_se=1.0).spec.combiner == "weighted"  # given in any order: tried simplest first


def test_unknown_combiner_is_refused():
    with pytest.raises(ValueError, match="unknown combiner 'median'"):
        ensemble.combine(MEMBERS, EnsembleSpec(combiner="median"))
