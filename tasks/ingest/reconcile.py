"""Decide each decoded file's fate against the dataset and the rest of the run:
keep (with its split), already ingested, or a duplicate refusal."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

import pyarrow as pa

from tasks.core.refusals import Reason, RefusedItem
from tasks.data.splits import SplitFractions, majority, resolve
from tasks.ingest.batch import BatchResult, RowKeys, Unchanged
from tasks.ingest.labels import Item

DUPLICATE_PIXELS = "same SOP Instance UID and pixels as another image"
UID_CLASH = "(0008,0018) SOP Instance UID reused with different pixels"


@dataclass
class Outcome:
    keep: dict[int, str] = field(default_factory=dict)  # item index -> split
    unchanged: int = 0
    relabelled: int = 0  # already ingested, but the CSV now gives another label (labels are not rewritten)
    replaced: int = 0  # series already in the dataset whose files changed: their row is replaced
    rejects: list[RefusedItem] = field(default_factory=list)


def existing_state(index: pa.Table) -> tuple[dict[str, Counter], dict[tuple[str, str], int]]:
    """Each known patient's splits, and patients per (majority label, split)."""
    splits: dict[str, Counter] = defaultdict(Counter)
    labels: dict[str, list[str]] = defaultdict(list)
    for patient, label, split in zip(*(index.column(c).to_pylist() for c in ("patient_key", "label", "split")), strict=True):
        splits[patient][split] += 1
        labels[patient].append(label)
    counts: Counter = Counter()
    for patient, split_counts in splits.items():
        counts[(majority(labels[patient]), majority(split_counts.elements()))] += 1
    return splits, counts


def reconcile(
    items: list[Item],
    results: list[BatchResult],
    index: pa.Table,
    fractions: SplitFractions,
    seed: int,
    key: bytes,
    allow_leakage: bool = False,
    replace_changed: bool = False,
) -> Outcome:
    """Deduplicate in CSV order (first occurrence wins) and assign splits to what is kept.
    ``replace_changed`` (series): a series already in the dataset that gained or lost a file is kept,
    and replaces its row, instead of being refused as a UID clash."""
    outcome = Outcome()
    for result in results:
        outcome.rejects.extend(result.rejects)
    known_by_sha = dict(zip(index.column("source_sha256").to_pylist(), index.column("label").to_pylist(), strict=True))
    known_images = dict(zip(index.column("image_key").to_pylist(),
                            zip(index.column("source_sha256").to_pylist(), index.column("pixels_sha256").to_pylist(), strict=True),
                            strict=True))
    facts: dict[int, Unchanged | RowKeys] = {}
    for result in results:
        for unchanged in result.unchanged:
            facts[unchanged.index] = unchanged
        for idx, keys in zip(result.index, result.keys, strict=True):
            facts[idx] = keys
    seen_sha: set[str] = set()
    seen_image: dict[str, tuple[str, str]] = dict(known_images)
    kept: list[tuple[int, str, str, str | None]] = []
    for item in items:
        fact = facts.get(item.index)
        if fact is None:
            continue
        sha = fact.source_sha256
        if sha in seen_sha:
            outcome.rejects.append(RefusedItem(item.index, Reason.EXACT_DUPLICATE, "byte-identical to an earlier input"))
            continue
        seen_sha.add(sha)
        if isinstance(fact, Unchanged):
            outcome.unchanged += 1
            outcome.relabelled += known_by_sha.get(sha) != item.label
            continue
        if fact.image_key in seen_image and replace_changed and fact.image_key in known_images \
                and seen_image[fact.image_key] == known_images[fact.image_key]:
            outcome.replaced += 1  # the dataset's row, not one of this run: the series changed
        elif fact.image_key in seen_image:
            same_pixels = seen_image[fact.image_key][1] == fact.pixels_sha256
            outcome.rejects.append(RefusedItem(item.index, *((Reason.EXACT_DUPLICATE, DUPLICATE_PIXELS) if same_pixels
                                                             else (Reason.DUPLICATE_SOP_INSTANCE_UID, UID_CLASH))))
            continue
        seen_image[fact.image_key] = (sha, fact.pixels_sha256)
        kept.append((item.index, fact.patient_key, item.label, item.split))
    existing_splits, existing_counts = existing_state(index)
    splits = resolve([(p, lbl, s) for _, p, lbl, s in kept], existing_splits, existing_counts,
                     fractions, seed, key, allow_leakage)
    outcome.keep = {idx: split for (idx, *_), split in zip(kept, splits, strict=True)}
    return outcome
