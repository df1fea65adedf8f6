"""Patient-level train/val/test splits: grouped by patient, stratified by label, deterministic,
and stable as data arrives (a patient already in the dataset keeps its split)."""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

SPLITS = ("train", "val", "test")


class SplitLeakageError(ValueError):
    """A patient would appear in more than one split."""


@dataclass(frozen=True)
class SplitFractions:
    train: float = 0.7
    val: float = 0.15
    test: float = 0.15

    def __post_init__(self) -> None:
        values = (self.train, self.val, self.test)
        if min(values) < 0 or abs(sum(values) - 1) > 1e-6:
            raise ValueError(f"split fractions must be >= 0 and sum to 1, got {values}")

    def as_dict(self) -> dict[str, float]:
        return {"train": self.train, "val": self.val, "test": self.test}


def _order_key(key: bytes, seed: int, patient: str) -> str:
    return hmac.new(key, f"split:{seed}:{patient}".encode(), hashlib.sha256).hexdigest()


def assign_new_patients(
    patient_label: Mapping[str, str],
    fractions: SplitFractions,
    seed: int,
    key: bytes,
    existing_counts: Mapping[tuple[str, str], int] | None = None,
) -> dict[str, str]:
    """Split new patients per label stratum so each stratum's split sizes track ``fractions``.

    Patients are visited in keyed-hash order (deterministic for a seed, unrelated to arrival
    order); each goes to the split furthest below its target, counting patients already there.
    """
    existing_counts = existing_counts or {}
    targets = fractions.as_dict()
    by_label: dict[str, list[str]] = defaultdict(list)
    for patient, label in patient_label.items():
        by_label[label].append(patient)
    assignment: dict[str, str] = {}
    for label, patients in sorted(by_label.items()):
        counts = {s: existing_counts.get((label, s), 0) for s in SPLITS}
        for patient in sorted(patients, key=lambda p: _order_key(key, seed, p)):
            total = sum(counts.values()) + 1
            split = max(SPLITS, key=lambda s: (targets[s] * total - counts[s], targets[s]))
            assignment[patient] = split
            counts[split] += 1
    return assignment


def majority(values: Iterable[str]) -> str:
    """Most frequent value; ties broken by name so the result is deterministic."""
    counts = Counter(values)
    return min(counts, key=lambda v: (-counts[v], v))


def resolve(
    rows: list[tuple[str, str, str | None]],
    existing: Mapping[str, Counter],
    existing_counts: Mapping[tuple[str, str], int],
    fractions: SplitFractions,
    seed: int,
    key: bytes,
    allow_leakage: bool = False,
) -> list[str]:
    """The split of each new row (patient_key, label, split from the CSV or None).

    A split given in the CSV is honoured; a patient already in the dataset keeps its split;
    everyone else is assigned by :func:`assign_new_patients`. A patient that would end up in two
    splits raises :class:`SplitLeakageError` unless ``allow_leakage``.
    """
    given: dict[str, list[str]] = defaultdict(list)
    labels: dict[str, list[str]] = defaultdict(list)
    for patient, label, split in rows:
        labels[patient].append(label)
        if split:
            given[patient].append(split)
    splits_of = {p: set(given.get(p, ())) | set(existing.get(p, ())) for p in labels}
    leaking = sorted(p for p, splits in splits_of.items() if len(splits) > 1)
    if leaking and not allow_leakage:
        raise SplitLeakageError(
            f"{len(leaking)} patient(s) would be in more than one split, e.g. patient_key "
            f"{leaking[0]} in {sorted(splits_of[leaking[0]])}; "
            "fix the CSV's split column or pass --allow-split-leakage"
        )
    fixed: dict[str, str] = {}
    for patient in labels:
        if patient in existing:
            fixed[patient] = majority(existing[patient].elements())
        elif given.get(patient):
            fixed[patient] = majority(given[patient])
    new = {p: majority(ls) for p, ls in labels.items() if p not in fixed}
    fixed.update(assign_new_patients(new, fractions, seed, key, existing_counts))
    return [split or fixed[patient] for patient, _label, split in rows]


def audit(patient_splits: Iterable[tuple[str, str]]) -> dict:
    """Patients per split and the patients found in more than one split (leakage)."""
    splits_of: dict[str, set[str]] = defaultdict(set)
    for patient, split in patient_splits:
        splits_of[patient].add(split)
    per_split = Counter(s for splits in splits_of.values() for s in splits)
    leaked = sorted(p for p, s in splits_of.items() if len(s) > 1)
    return {
        "patients": len(splits_of),
        "patients_per_split": {s: per_split.get(s, 0) for s in SPLITS},
        "patients_in_several_splits": len(leaked),
        "leaked_patient_keys": leaked[:20],
    }
