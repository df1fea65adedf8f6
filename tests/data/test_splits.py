"""Patient-level split assignment and the leakage audit."""

from __future__ import annotations

from collections import Counter

import pytest

from tasks.data.splits import SplitFractions, SplitLeakageError, assign_new_patients, audit, resolve

KEY = b"k" * 16


def patients(n: int, label: str) -> dict[str, str]:
    return {f"{label}-{i}": label for i in range(n)}


class TestAssignNewPatients:
    def test_stratified_fractions_per_label(self):
        labels = {**patients(200, "a"), **patients(60, "b")}
        result = assign_new_patients(labels, SplitFractions(), seed=0, key=KEY)
        for label, n in (("a", 200), ("b", 60)):
            counts = Counter(s for p, s in result.items() if labels[p] == label)
            assert abs(counts["train"] - 0.7 * n) <= 1 and abs(counts["val"] - 0.15 * n) <= 1
            assert abs(counts["test"] - 0.15 * n) <= 1

    def test_deterministic_for_a_seed_and_independent_of_order(self):
        labels = patients(50, "a")
        first = assign_new_patients(labels, SplitFractions(), 3, KEY)
        reordered = dict(reversed(list(labels.items())))
        assert assign_new_patients(reordered, SplitFractions(), 3, KEY) == first
        assert assign_new_patients(labels, SplitFractions(), 4, KEY) != first

    def test_counts_already_in_the_dataset_are_topped_up(self):
        result = assign_new_patients(patients(10, "a"), SplitFractions(), 0, KEY, {("a", "train"): 20})
        counts = Counter(result.values())
        assert counts["train"] <= 1 and counts["val"] >= 4 and counts["test"] >= 4  # train holds ~70% of 30 already

    def test_fractions_must_sum_to_one(self):
        with pytest.raises(ValueError, match="sum to 1"):
            SplitFractions(0.5, 0.2, 0.2)


class TestResolve:
    def test_images_of_a_patient_share_a_split(self):
        rows = [(f"p{i % 10}", "a", None) for i in range(40)]
        splits = resolve(rows, {}, {}, SplitFractions(), 0, KEY)
        by_patient = {}
        for (patient, _, _), split in zip(rows, splits, strict=True):
            assert by_patient.setdefault(patient, split) == split

    def test_csv_splits_are_honoured_and_existing_patients_keep_theirs(self):
        rows = [("p1", "a", "test"), ("p2", "a", None), ("p3", "a", None)]
        splits = resolve(rows, {"p2": Counter({"val": 3})}, {}, SplitFractions(), 0, KEY)
        assert splits[:2] == ["test", "val"]

    def test_patient_in_two_csv_splits_fails_unless_allowed(self):
        rows = [("p1", "a", "train"), ("p1", "a", "test")]
        with pytest.raises(SplitLeakageError, match="more than one split"):
            resolve(rows, {}, {}, SplitFractions(), 0, KEY)
        assert resolve(rows, {}, {}, SplitFractions(), 0, KEY, allow_leakage=True) == ["train", "test"]

    def test_csv_split_against_the_dataset_is_leakage(self):
        with pytest.raises(SplitLeakageError):
            resolve([("p1", "a", "test")], {"p1": Counter({"train": 1})}, {}, SplitFractions(), 0, KEY)


def test_audit_counts_patients_and_leaks():
    result = audit([("p1", "train"), ("p1", "train"), ("p2", "val"), ("p3", "test"), ("p3", "train")])
    assert result["patients"] == 3
    assert result["patients_per_split"] == {"train": 2, "val": 1, "test": 1}
    assert result["patients_in_several_splits"] == 1 and result["leaked_patient_keys"] == ["p3"]
