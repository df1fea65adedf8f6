"""ingest_flow end to end on a real Prefect API and real Ray workers: outcomes, refusals, versions."""

from __future__ import annotations

import os

import pytest

from flows.ingest import IngestParams, ingest_flow
from tasks.core.refusals import SERIES_REASONS, Reason
from tasks.data import dataset
from tests.corpora import bad_corpus, good_corpus, read_csv


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory, ray_local):
    root = tmp_path_factory.mktemp("bad")
    source, outside = root / "source", root / "outside"
    labels, expected = bad_corpus(str(source), str(outside))
    params = IngestParams(source=str(source), labels=labels, dataset=str(root / "dataset"),
                          rejects=str(root / "rejects.csv"), image_size=32)
    summary = ingest_flow(params)
    rejects = {row["path"]: row["reason"] for row in read_csv(params.rejects)}
    return params, summary, expected, rejects


def test_rejects_csv_lives_outside_the_dataset(bad_run):
    params, *_ = bad_run
    assert os.path.exists(params.rejects)
    assert not os.path.commonpath([params.rejects, params.dataset]) == params.dataset


@pytest.mark.parametrize("reason", sorted(set(Reason) - {Reason.READ_ERROR, Reason.INTERNAL_ERROR} - SERIES_REASONS))
def test_each_refusal_reason(bad_run, reason):
    _, _, expected, rejects = bad_run
    paths = [p for p, r in expected.items() if r == reason]
    assert paths, f"the bad corpus has no input for {reason}"
    for path in paths:
        assert rejects.get(path) == reason, (path, rejects.get(path))


def test_every_input_has_exactly_one_outcome(bad_run):
    params, summary, expected, rejects = bad_run
    good = [r["path"] for r in read_csv(params.labels) if not r["path"].startswith(("bad/", "/", "..", "nowhere/"))]
    assert summary.added == len(good) == dataset.read_index(params.dataset).num_rows
    assert set(rejects) == set(expected)  # no good file refused, no bad one kept
    assert summary.rejected == len(rejects)
    assert summary.inputs == summary.added + summary.rejected
    assert len(read_csv(params.rejects)) == len(rejects)  # one row per refused input


def test_dataset_rows_follow_the_contract(bad_run):
    params, *_ = bad_run
    table = dataset.read_version(params.dataset)
    for column in ("image_key", "patient_key", "label", "split", "source_sha256"):
        assert table.schema.field(column).type == "string"
    row = table.slice(0, 1).to_pylist()[0]
    assert len(row["pixels"]) == row["height"] * row["width"] == 32 * 32
    assert len(row["source_sha256"]) == 64 and row["split"] in ("train", "val", "test")


def test_refusals_do_not_create_versions(tmp_path, ray_local):
    labels = str(tmp_path / "labels.csv")
    os.makedirs(tmp_path / "src")
    with open(labels, "w") as f:
        f.write("path,label\nmissing.dcm,normal\n")
    params = IngestParams(source=str(tmp_path / "src"), labels=labels, dataset=str(tmp_path / "ds"),
                          rejects=str(tmp_path / "rejects.csv"))
    summary = ingest_flow(params)
    assert summary.version is None and summary.rejected == 1
    assert dataset.latest_version(params.dataset) is None


def test_progress_and_summary_carry_counts_only(tmp_path, ray_local):
    labels = good_corpus(str(tmp_path / "src"), n_patients=3)
    params = IngestParams(source=str(tmp_path / "src"), labels=labels, dataset=str(tmp_path / "ds"),
                          rejects=str(tmp_path / "r.csv"), image_size=16)
    summary = ingest_flow(params)
    assert summary.added == 6 and summary.version == 0
    assert "CANARY" not in repr(summary)


def test_a_flow_asking_for_another_image_size_fails_before_decoding(tmp_path, ray_local):
    from tasks.data.dataset import GeometryMismatchError

    labels = good_corpus(str(tmp_path / "src"), n_patients=2, images_per_patient=2)
    params = IngestParams(source=str(tmp_path / "src"), labels=labels, dataset=str(tmp_path / "ds"),
                          rejects=str(tmp_path / "rejects.csv"), image_size=16)
    assert ingest_flow(params).image_size == 16
    os.remove(params.rejects)
    with pytest.raises(GeometryMismatchError):
        ingest_flow(params.model_copy(update={"image_size": 24}))
    assert not os.path.exists(params.rejects)  # the run stopped before decoding, so wrote nothing
    assert dataset.geometry(params.dataset).image_size == 16
