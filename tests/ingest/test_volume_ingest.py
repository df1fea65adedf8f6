"""Volume datasets end to end on real Ray workers and a real Prefect API: series assembled into rows,
series-level refusals, the PHI canary, incremental re-ingest, and the kind fixed at creation."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pyarrow.parquet as pq
import pytest
from deltalake.table import TableMerger

from flows.ingest import IngestParams, ingest_flow
from medflow import synthetic, synthetic_series
from medflow.cli import main
from tasks.data import dataset
from tasks.ingest import fingerprints
from tests.corpora import append_rows, read_csv, series_corpus
from tests.ingest.test_phi import prefect_text, sentinels, text_of_tree

GOOD = 4 * 2 + 3  # the writer's series, the series with a scout and an SR, the Enhanced file, the growing series


@pytest.fixture(scope="module")
def series_run(tmp_path_factory, ray_local):
    root = tmp_path_factory.mktemp("volumes")
    source = root / "source"
    labels, expected, facts = series_corpus(str(source))
    params = IngestParams(source=str(source), labels=labels, dataset=str(root / "dataset"),
                          rejects=str(root / "rejects.csv"), image_size=16, volumes=True)
    state = ingest_flow(params, return_state=True)
    return root, params, state, expected, facts


def test_every_series_has_one_outcome_and_each_refusal_its_reason(series_run):
    _, params, state, expected, _ = series_run
    summary = state.result()
    rejects = {row["path"]: row["reason"] for row in read_csv(params.rejects)}
    assert rejects == expected
    assert summary.kind == "volume3d" and summary.added == GOOD == dataset.read_index(params.dataset).num_rows
    assert summary.inputs == summary.added + summary.rejected
    assert summary.dropped_from_series == {"localizer": 1, "non_image": 1}


def test_rows_follow_the_volume_contract(series_run):
    _, params, *_ = series_run
    assert dataset.geometry(params.dataset).model_dump() == {"kind": "volume3d", "image_size": 16, "window": None}
    rows = dataset.read_version(params.dataset).to_pylist()
    for row in rows:
        assert (row["depth"], row["height"], row["width"]) == (16, 16, 16) and len(row["pixels"]) == 16**3
        assert row["resampled_spacing"][0] == pytest.approx(max(row["slices"] * row["spacing"][0],
                                                                16 * row["spacing"][1]) / 16)
        assert row["modality"] in ("CT", "MR") and len(row["source_sha256"]) == 64
    assert sorted(r["slices"] for r in rows) == [7] + [8] * (GOOD - 1)  # the growing series has 7 so far
    assert sorted(r["dropped_files"] for r in rows) == [0] * (GOOD - 1) + [2]  # the scout and the SR


def test_nothing_identifying_reaches_the_dataset_export_logs_or_prefect(series_run, capfd, caplog):
    root, params, state, *_ = series_run
    caplog.set_level(logging.DEBUG)
    export = str(root / "export.parquet")
    assert main(["dataset", "export", params.dataset, "--out", export]) == 0
    assert main(["dataset", "info", params.dataset]) == 0
    out, err = capfd.readouterr()
    assert set(pq.read_schema(export).names) >= {"depth", "spacing", "resampled_spacing", "slices", "split"}
    planted = sentinels(params.source)
    written = text_of_tree(params.dataset) + text_of_tree(export)
    shown = asyncio.run(prefect_text(state.state_details.flow_run_id))
    assert len(planted) > 50
    for value in planted:
        assert value not in written and value not in shown and value not in out + err + caplog.text, value


def test_rerun_reads_nothing_and_a_grown_series_is_reassembled_and_replaced(series_run):
    _, params, _, _, facts = series_run
    again = ingest_flow(params.model_copy(update={"volumes": None}))  # the dataset's kind: no flag needed
    assert (again.added, again.unchanged, again.unchanged_not_read) == (0, GOOD, GOOD)
    before = dataset.read_version(params.dataset).to_pylist()
    folder, slice_ = facts["growing"]
    synthetic_series.write_files(folder, [slice_], np.random.default_rng(9))
    grown = ingest_flow(params)
    assert (grown.added, grown.replaced, grown.unchanged, grown.version) == (0, 1, GOOD - 1, again.version + 1)
    after = dataset.read_version(params.dataset).to_pylist()
    assert len(after) == len(before) == GOOD
    changed = [r for r in after if r["source_sha256"] not in {b["source_sha256"] for b in before}]
    assert len(changed) == 1 and changed[0]["slices"] == 8
    old = next(b for b in before if b["image_key"] == changed[0]["image_key"])
    assert old["slices"] == 7 and old["split"] == changed[0]["split"]


def test_the_kind_is_fixed_when_the_dataset_is_created(series_run, tmp_path, capsys):
    _, params, *_ = series_run
    assert main(["ingest", params.source, "--labels", params.labels, "--dataset", params.dataset, "--images"]) == 2
    assert "holds 16x16x16 volumes; --images would mix images and volumes" in capsys.readouterr().err
    assert main(["ingest", params.source, "--labels", params.labels, "--dataset", params.dataset, "--window", "40,400"]) == 2
    assert "made with each series' own window; --window 40,400 would mix windows" in capsys.readouterr().err
    images = tmp_path / "images"
    labels = synthetic.write_corpus(str(images / "src"), n_patients=2, images_per_patient=1, size=16)
    assert main(["ingest", str(images / "src"), "--labels", labels, "--dataset", str(images / "ds"),
                 "--rejects", str(images / "r.csv")]) == 0
    assert main(["ingest", params.source, "--labels", params.labels, "--dataset", str(images / "ds"), "--volumes"]) == 2
    assert "holds 16x16 images; --volumes would mix" in capsys.readouterr().err
    assert main(["ingest", str(images / "src"), "--labels", labels, "--dataset", str(images / "ds"), "--window", "40,400"]) == 2
    assert "--window applies to volume datasets only" in capsys.readouterr().err


def test_the_window_asked_for_is_recorded_and_used(tmp_path, ray_local):
    from tasks.dicom.volume import decode_series

    labels = synthetic_series.write_volume_corpus(str(tmp_path / "src"), n_patients=2, series_per_patient=1, size=16, depth=6)
    params = IngestParams(source=str(tmp_path / "src"), labels=labels, dataset=str(tmp_path / "ds"), volumes=True,
                          image_size=16, window=(400.0, 2000.0), rejects=str(tmp_path / "r.csv"))
    assert ingest_flow(params).added == 2
    assert dataset.geometry(params.dataset).window == (400.0, 2000.0)
    row = dataset.read_version(params.dataset).to_pylist()[0]
    folder = next(r["path"] for r in read_csv(labels) if r["label"] == row["label"])
    files = [p.read_bytes() for p in sorted((tmp_path / "src" / folder).iterdir())]
    candidates = {decode_series(files, 16, window).pixels.tobytes(): window for window in ((400.0, 2000.0), None)}
    assert len(candidates) == 2  # the series' own window gives other pixels
    matching = [r for r in dataset.read_version(params.dataset).to_pylist() if r["pixels"] in candidates]
    assert matching and all(candidates[r["pixels"]] == (400.0, 2000.0) for r in matching)


def _crash(*args, **kwargs):
    raise RuntimeError("simulated crash")


def test_crashes_while_a_grown_series_is_replaced_then_a_rerun_equal_one_clean_run(tmp_path, ray_local, monkeypatch):
    source = tmp_path / "src"
    labels = synthetic_series.write_volume_corpus(str(source), n_patients=3, series_per_patient=1, size=16, depth=6)
    rng = np.random.default_rng(3)
    growing = synthetic_series.slice_datasets(synthetic_series.lesion_volume(rng, 6, 16, True), "CT", synthetic.Phi.for_patient(50))
    synthetic_series.write_files(str(source / "growing"), growing[:5], rng)
    append_rows(labels, [("growing", "abnormal")])
    clean, crashed = (IngestParams(source=str(source), labels=labels, dataset=str(tmp_path / name), image_size=16,
                                   volumes=True, rejects=str(tmp_path / f"{name}.csv")) for name in ("clean", "crashed"))
    assert ingest_flow(clean).added == ingest_flow(crashed).added == 4
    synthetic_series.write_files(str(source / "growing"), growing[5:], rng)
    assert ingest_flow(clean).replaced == 1
    before = dataset.latest_version(crashed.dataset)

    monkeypatch.setattr(TableMerger, "execute", _crash)  # inside the MERGE, before its commit
    with pytest.raises(Exception, match="simulated crash"):
        ingest_flow(crashed)
    monkeypatch.undo()
    assert dataset.latest_version(crashed.dataset) == before  # nothing half-replaced
    monkeypatch.setattr(fingerprints, "save", _crash)  # after the MERGE's commit, before the fingerprints
    with pytest.raises(Exception, match="simulated crash"):
        ingest_flow(crashed)
    monkeypatch.undo()
    assert dataset.latest_version(crashed.dataset) == before + 1
    rerun = ingest_flow(crashed)  # stale fingerprints: the series is read again, and found already in place
    assert (rerun.added, rerun.replaced, rerun.unchanged, rerun.version) == (0, 0, 4, before + 1)

    def rows(params: IngestParams) -> list[tuple]:
        table = dataset.read_version(params.dataset)
        return sorted(tuple(v for k, v in r.items() if k != "split") for r in table.to_pylist())

    assert rows(crashed) == rows(clean)
    assert [r["slices"] for r in dataset.read_version(crashed.dataset).to_pylist()] == [6] * 4  # the grown series too
