"""benchmarks/quality.py's rule for a member still learning when its run ended."""

from __future__ import annotations

from benchmarks.quality import end_trend


def checks(smoothed: list[float]) -> list[dict]:
    return [{"epoch": 10 * i, "val_auc": auc, "val_auc_smoothed": auc} for i, auc in enumerate(smoothed)]


def test_a_member_that_gains_to_its_last_check_is_still_rising():
    assert end_trend(checks([0.90, 0.95, 0.96, 0.97, 0.975, 0.980, 0.985, 0.990])).startswith("STILL RISING")


def test_a_flat_end_is_not_rising():
    assert end_trend(checks([0.90, 0.95, 0.98, 0.99, 0.9901, 0.9902, 0.9902, 0.9905])).startswith("not rising")


def test_a_member_that_peaked_in_its_last_quarter_and_fell_since_is_not_rising():
    trend = end_trend(checks([0.90, 0.95, 0.97, 0.978, 0.980, 0.982, 0.984, 0.986, 0.988, 0.992, 0.991, 0.9903]))
    assert trend.startswith("not rising") and "peaked at epoch 91" in trend and "0.0017 below" in trend
