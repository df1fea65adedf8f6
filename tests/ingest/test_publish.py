"""The rejects CSV: every refused input by path, sorted, with reason and detail."""

from __future__ import annotations

import csv

from tasks.core.refusals import Reason, RefusedItem, RefusedPath
from tasks.ingest.labels import Item, Plan
from tasks.ingest.publish import REJECTS_HEADER, publish_version, refused_paths, write_rejects
from tasks.ingest.reconcile import Outcome


def test_refusals_by_path_and_the_csv(tmp_path):
    work = Plan(items=[Item(0, "b/x.dcm", "normal", None, 1), Item(1, "a/y.dcm", "normal", None, 1)],
                rejects=[RefusedPath("z.dcm", Reason.UNLABELED, "no row in the labels CSV")])
    outcome = Outcome(rejects=[RefusedItem(1, Reason.TRUNCATED, "header ends early"),
                               RefusedItem(0, Reason.EXACT_DUPLICATE, "byte-identical to an earlier input")])
    rejects = refused_paths(work, outcome)
    assert [(r.path, r.reason) for r in rejects] == [("z.dcm", "unlabeled"), ("a/y.dcm", "truncated"),
                                                     ("b/x.dcm", "exact_duplicate")]
    write_rejects(str(tmp_path / "rejects.csv"), rejects)
    with open(tmp_path / "rejects.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows == [list(REJECTS_HEADER), ["a/y.dcm", "truncated", "header ends early"],
                    ["b/x.dcm", "exact_duplicate", "byte-identical to an earlier input"],
                    ["z.dcm", "unlabeled", "no row in the labels CSV"]]


def test_nothing_kept_publishes_no_version(tmp_path):
    assert publish_version(str(tmp_path / "ds"), None, Outcome(), {}, None, None) is None
    assert not (tmp_path / "ds").exists()
