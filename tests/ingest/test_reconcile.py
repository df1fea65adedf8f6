"""Reconciliation on hand-made batch results: duplicates in CSV order, unchanged files, relabels, splits."""

from __future__ import annotations

import pyarrow as pa

from tasks.core.refusals import Reason, RefusedItem
from tasks.data.dataset import INDEX_COLUMNS
from tasks.data.schema import SCHEMA
from tasks.data.splits import SplitFractions
from tasks.ingest.batch import BatchResult, RowKeys, Unchanged
from tasks.ingest.labels import Item
from tasks.ingest.reconcile import reconcile

KEY = b"k" * 16
EMPTY = SCHEMA.empty_table().select(INDEX_COLUMNS)


def item(i: int, label: str = "normal", split: str | None = None) -> Item:
    return Item(index=i, path=f"f{i}.dcm", label=label, split=split, size=10)


def decoded(*rows: tuple[int, RowKeys]) -> BatchResult:
    return BatchResult(table=None, index=[i for i, _ in rows], keys=[k for _, k in rows])


def test_first_occurrence_wins_and_duplicates_get_their_reason():
    items = [item(0), item(1), item(2), item(3, split="test")]
    result = decoded((0, RowKeys("img-a", "pat-1", "sha-0", "pix-a")),
                     (1, RowKeys("img-b", "pat-1", "sha-0", "pix-b")),  # same bytes as item 0
                     (2, RowKeys("img-a", "pat-2", "sha-2", "pix-z")),  # item 0's UID, other pixels
                     (3, RowKeys("img-c", "pat-3", "sha-3", "pix-c")))
    outcome = reconcile(items, [result], EMPTY, SplitFractions(), seed=0, key=KEY)
    assert outcome.rejects == [RefusedItem(1, Reason.EXACT_DUPLICATE, "byte-identical to an earlier input"),
                               RefusedItem(2, Reason.DUPLICATE_SOP_INSTANCE_UID,
                                           "(0008,0018) SOP Instance UID reused with different pixels")]
    assert set(outcome.keep) == {0, 3} and outcome.keep[3] == "test"  # the CSV's split is honoured
    assert outcome.unchanged == 0


def test_same_uid_and_same_pixels_is_an_exact_duplicate():
    items = [item(0), item(1)]
    result = decoded((0, RowKeys("img-a", "pat-1", "sha-0", "pix-a")), (1, RowKeys("img-a", "pat-1", "sha-1", "pix-a")))
    outcome = reconcile(items, [result], EMPTY, SplitFractions(), seed=0, key=KEY)
    assert [(r.index, r.reason) for r in outcome.rejects] == [(1, Reason.EXACT_DUPLICATE)]


def test_unchanged_files_count_and_relabels_are_reported_not_applied():
    index = pa.table({"image_key": ["img-a"], "patient_key": ["pat-1"], "label": ["normal"], "split": ["val"],
                      "source_sha256": ["sha-0"], "pixels_sha256": ["pix-a"]})
    items = [item(0, label="abnormal"), item(1)]
    result = BatchResult(table=None, unchanged=[Unchanged(0, "sha-0")], index=[1],
                         keys=[RowKeys("img-b", "pat-1", "sha-1", "pix-b")])
    outcome = reconcile(items, [result], index, SplitFractions(), seed=0, key=KEY)
    assert outcome.unchanged == 1 and outcome.relabelled == 1
    assert outcome.keep == {1: "val"}  # a known patient keeps its split


def test_refusals_from_decoding_are_carried_over():
    refused = RefusedItem(0, Reason.NOT_DICOM, "no 'DICM' prefix")
    outcome = reconcile([item(0)], [BatchResult(table=None, rejects=[refused])], EMPTY, SplitFractions(), 0, KEY)
    assert outcome.rejects == [refused] and outcome.keep == {}
