"""The labels plan: every CSV row and every listed file gets exactly one outcome, before any file is opened."""

from __future__ import annotations

import os

import pytest

from tasks.core.refusals import Reason
from tasks.ingest.labels import LabelsError, plan


def write(root, rel: str, data: bytes = b"x") -> None:
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def test_every_row_and_file_has_one_outcome(tmp_path):
    src = tmp_path / "src"
    for rel in ("a.dcm", "sub/b.dcm", "c.dcm", "twice.dcm", "nolabel.dcm", "extra.dcm"):
        write(src, rel)
    (src / "labels.csv").write_text("path,label,split\na.dcm,normal,\nsub/b.dcm,abnormal,test\ntwice.dcm,normal,\n"
                                    "twice.dcm,abnormal,\nnolabel.dcm,,\n../up.dcm,normal,\ngone.dcm,normal,\nc.dcm,abnormal,bogus\n")
    work = plan(str(src), str(src / "labels.csv"))
    assert [(i.index, i.path, i.label, i.split) for i in work.items] == [(0, "a.dcm", "normal", None),
                                                                          (1, "sub/b.dcm", "abnormal", "test")]
    reasons = {r.path: r.reason for r in work.rejects}
    assert reasons == {"twice.dcm": Reason.CONFLICTING_LABELS, "nolabel.dcm": Reason.INVALID_LABEL_ROW,
                       "../up.dcm": Reason.PATH_OUTSIDE_SOURCE, "gone.dcm": Reason.MISSING_FILE,
                       "c.dcm": Reason.INVALID_LABEL_ROW, "extra.dcm": Reason.UNLABELED}
    assert "labels.csv" not in reasons  # the CSV itself, inside the source, is not an unlabeled input


def test_a_csv_without_the_required_columns_is_refused_as_a_whole(tmp_path):
    (tmp_path / "l.csv").write_text("file,class\na.dcm,x\n")
    with pytest.raises(LabelsError, match="lacks column"):
        plan(str(tmp_path), str(tmp_path / "l.csv"))
