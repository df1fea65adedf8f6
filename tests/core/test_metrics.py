"""Metrics agree with scikit-learn on fixed inputs; bootstrap resamples whole patients."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from tasks.core import metrics

RNG = np.random.default_rng(7)
LABELS = RNG.integers(0, 2, 300)
P1 = np.clip(0.25 * LABELS + RNG.random(300) * 0.75, 0, 1)
BINARY = np.stack([1 - P1, P1], axis=1)
PATIENTS = np.repeat(np.arange(100), 3)


class TestCompute:
    def test_binary_metrics_equal_sklearn(self):
        out = metrics.compute(BINARY, LABELS, positive=1, threshold=0.4)
        pred = (P1 >= 0.4).astype(int)
        assert out["auc"] == pytest.approx(skm.roc_auc_score(LABELS, P1))
        assert out["accuracy_at_op"] == pytest.approx(skm.accuracy_score(LABELS, pred))
        assert out["balanced_accuracy_at_op"] == pytest.approx(skm.balanced_accuracy_score(LABELS, pred))
        assert out["sensitivity_at_op"] == pytest.approx(skm.recall_score(LABELS, pred))
        assert out["specificity_at_op"] == pytest.approx(skm.recall_score(LABELS, pred, pos_label=0))
        assert out["f1_at_op"] == pytest.approx(skm.f1_score(LABELS, pred))
        assert out["brier"] == pytest.approx(skm.brier_score_loss(LABELS, P1))
        assert out["confusion_matrix"] == skm.confusion_matrix(LABELS, pred).tolist()
        pred_half = (P1 >= 0.5).astype(int)
        assert out["accuracy_at_0.5"] == pytest.approx(skm.accuracy_score(LABELS, pred_half))

    def test_positive_class_zero_swaps_sensitivity_and_specificity(self):
        flipped = metrics.compute(BINARY[:, ::-1], 1 - LABELS, positive=0, threshold=0.4)
        plain = metrics.compute(BINARY, LABELS, positive=1, threshold=0.4)
        for name in ("auc", "sensitivity_at_op", "specificity_at_op", "f1_at_op", "brier"):
            assert flipped[name] == pytest.approx(plain[name])

    def test_multiclass_macro_metrics_equal_sklearn(self):
        labels = RNG.integers(0, 3, 200)
        logits = RNG.normal(size=(200, 3)) + 1.5 * np.eye(3)[labels]
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        out = metrics.compute(probs, labels, positive=1)
        pred = probs.argmax(axis=1)
        assert out["auc"] == pytest.approx(skm.roc_auc_score(labels, probs, multi_class="ovr"))
        assert out["balanced_accuracy_at_op"] == pytest.approx(skm.balanced_accuracy_score(labels, pred))
        assert out["sensitivity_at_op"] == pytest.approx(skm.recall_score(labels, pred, average="macro"))
        assert out["f1_at_op"] == pytest.approx(skm.f1_score(labels, pred, average="macro"))

    def test_ece_is_zero_for_perfect_confident_predictions(self):
        probs = np.eye(2)[LABELS].astype(float)
        assert metrics.compute(probs, LABELS, 1)["ece"] == pytest.approx(0.0, abs=1e-6)
        assert metrics.compute(BINARY, LABELS, 1)["ece"] > 0.05


class TestBootstrap:
    def test_patient_weights_move_images_of_a_patient_together(self):
        weights = metrics.patient_weights(PATIENTS, 50, seed=0)
        assert weights.shape == (50, 300)
        per_patient = weights.reshape(50, 100, 3)
        assert np.all(per_patient == per_patient[:, :, :1])
        assert np.all(weights.sum(axis=1) == 300)  # as many patients drawn as there are

    def test_interval_brackets_the_point_estimate_and_is_reproducible(self):
        weights = metrics.patient_weights(PATIENTS, 1000, seed=1)
        ci = metrics.bootstrap(BINARY, LABELS, weights, 1, 0.5)
        point = metrics.compute(BINARY, LABELS, 1, 0.5)
        for name in ("auc", "accuracy_at_op", "sensitivity_at_op", "brier", "ece"):
            low, high = ci[name]
            assert low < point[name] < high, name
        assert ci == metrics.bootstrap(BINARY, LABELS, metrics.patient_weights(PATIENTS, 1000, seed=1), 1, 0.5)

    def test_unit_weights_reproduce_sklearn(self):
        ci = metrics.bootstrap(BINARY, LABELS, np.ones((3, 300)), 1, 0.5)
        assert ci["auc"] == [pytest.approx(skm.roc_auc_score(LABELS, P1))] * 2

    @pytest.mark.parametrize("classes", [2, 3])
    def test_each_resample_equals_the_libraries_on_that_resample(self, classes):
        """The vectorised resampling gives, resample by resample, what scikit-learn (weighted) and
        torchmetrics (ECE, on the images repeated by their weight) give: ties and missing classes included."""
        rng = np.random.default_rng(classes)
        labels = rng.integers(0, classes, 90)
        logits = rng.normal(size=(90, classes)) + 1.5 * np.eye(classes)[labels]
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        probs[:15] = probs[15:30]  # tied scores
        weights = metrics.patient_weights(np.repeat(np.arange(30), 3), 40, seed=3)
        weights[0] = np.where(labels == 0, weights[0], 0)  # one resample without positives: AUC undefined
        values = metrics.resampled(probs, labels, weights, 1, 0.4)
        for i, w in enumerate(weights):
            expected = metrics.compute(probs, labels, 1, 0.4, weight=w, with_ece=False)
            keep = np.repeat(np.arange(90), w.astype(int))
            expected["ece"] = metrics.compute(probs[keep], labels[keep], 1, 0.4)["ece"]
            for name, value in values.items():
                assert value[i] == pytest.approx(expected[name], abs=1e-6, nan_ok=True), (i, name)
        assert np.isnan(values["auc"][0]) and not np.isnan(values["auc"][1:]).any()

    def test_roc_band_equals_a_curve_per_resample(self):
        weights = metrics.patient_weights(PATIENTS, 200, seed=2)
        band = metrics.roc_band(BINARY, LABELS, weights, 1)
        grid = np.array(band["grid"])
        curves = []
        for w in weights:
            fpr, tpr, _ = skm.roc_curve(LABELS == 1, P1, sample_weight=w)
            curves.append(np.interp(grid, fpr, tpr))
        assert band["low"] == pytest.approx(np.percentile(curves, 2.5, axis=0).tolist())
        assert band["high"] == pytest.approx(np.percentile(curves, 97.5, axis=0).tolist())
        assert np.all(np.array(band["low"]) <= np.array(band["high"])) and band["high"][10] > band["low"][10]


class TestOperatingPoint:
    def test_separable_scores_get_a_threshold_between_the_classes(self):
        probs1 = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.9])
        labels = np.array([0, 0, 0, 1, 1, 1])
        t = metrics.operating_point(np.stack([1 - probs1, probs1], 1), labels, 1)
        assert t == pytest.approx(0.45)

    def test_youden_optimum_matches_a_brute_force_search(self):
        t = metrics.operating_point(BINARY, LABELS, 1)
        j = lambda c: skm.recall_score(LABELS, P1 >= c) + skm.recall_score(LABELS, P1 >= c, pos_label=0) - 1  # noqa: E731
        assert j(t) == pytest.approx(max(j(c) for c in np.unique(P1)))


@pytest.mark.parametrize(("classes", "expected"), [(["abnormal", "normal"], 0), (["Normal", "pneumonia"], 1),
                                                   (["cat", "dog"], 1)])
def test_positive_class_defaults_to_the_not_normal_one(classes, expected):
    assert metrics.positive_index(classes) == expected


def test_unknown_positive_class_is_a_clear_error():
    with pytest.raises(ValueError, match="positive class 'x' is not one of"):
        metrics.positive_index(["a", "b"], "x")
