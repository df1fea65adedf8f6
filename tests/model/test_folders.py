"""The run folder and model folder layouts: one owner for every path under a run."""

from __future__ import annotations

import pytest

from tasks.core import storage
from tasks.model.folders import ModelFolder, RunFolder, member_file, resolve_model


def test_every_path_under_a_run_comes_from_the_run_folder():
    run = RunFolder("s3://runs/chest/v3-abc")
    assert run.name == "v3-abc"
    assert run.metrics == "s3://runs/chest/v3-abc/metrics.json" and run.claim.endswith("/claimed-by.txt")
    assert run.checkpoint("member-1") == "s3://runs/chest/v3-abc/checkpoints/member-1"
    assert run.report_page == "s3://runs/chest/v3-abc/report/index.html"
    assert run.model == ModelFolder("s3://runs/chest/v3-abc/model")
    assert run.model.weights("member-1") == run.model.file(member_file("member-1")) == "s3://runs/chest/v3-abc/model/members/member-1.pt"
    assert run.model.record("member-1").endswith("/model/members/member-1.json")


def test_a_model_is_found_in_its_folder_or_in_its_run_folder(tmp_path):
    run = RunFolder(str(tmp_path / "run"))
    with pytest.raises(FileNotFoundError, match="no model at"):
        resolve_model(run.uri)
    assert not run.is_evaluated()
    storage.write_bytes_atomic(run.model.card, b"{}")
    assert resolve_model(run.uri) == run.model == resolve_model(run.model.uri)
    storage.write_json(run.metrics, {})
    assert run.is_evaluated()
