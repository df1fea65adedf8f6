"""train -> evaluate -> predict through the real flows: Ray Train workers, Prefect API, moto S3."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import re

import numpy as np
import pytest
import torch

from flows.evaluate import EvaluateParams, evaluate_flow
from flows.predict import PredictParams, predict_flow
from flows.train import TrainParams, train_flow
from tasks.core import storage
from tasks.data.samples import load_split
from tasks.model import store as model_store
from tasks.model.config import EnsembleConfig
from tasks.model.runs import RunMismatchError
from tasks.model.store import EnsembleModel
from tasks.serve.predict import predict, predict_source
from tasks.train.precision import autocast_dtype, precision_name
from tests.conftest import latest_artifact
from tests.core.test_s3 import upload
from tests.corpora import ingested_corpus, read_csv, write

CONFIG = EnsembleConfig.model_validate({
    "members": 2, "architectures": ["seed_cnn"], "bagging": True,
    "train": {"epochs": 3, "batch_size": 32, "learning_rate": 3e-3, "augment": {"affine": 0.3, "crop": 0}},
    "evaluation": {"bootstrap_resamples": 200, "tta_hflip": True, "tta_zoom": True},
})


@pytest.fixture(scope="module")
def trained(tmp_path_factory, ray_local):
    root = tmp_path_factory.mktemp("flow")
    _, uri = ingested_corpus(root, 50, 4, (0.6, 0.2, 0.2))
    train = TrainParams(dataset=uri, run=str(root / "run"), config=CONFIG)
    summary = train_flow(train)
    return root, train, summary


def test_train_writes_members_model_card_and_lineage(trained):
    root, train, summary = trained
    assert [m.name for m in summary.members] == ["member-0", "member-1"]
    assert [m.seed for m in summary.members] == [0, 1]
    card = model_store.load_card(str(root / "run" / "model"))
    assert card.classes == ["abnormal", "normal"] and card.preprocessing.image_size == 32
    assert card.preprocessing.tta_hflip and card.preprocessing.tta_zoom == 1.1  # pinned: predict averages 4 views
    for member in card.members:
        assert os.path.exists(root / "run" / "model" / member.file)
    lineage = json.loads((root / "run" / "model" / "lineage.json").read_text())
    assert lineage["dataset_version"] == 0 and lineage["config"] == CONFIG.model_dump(mode="json")
    assert lineage["seeds"] == {"member-0": 0, "member-1": 1}
    assert lineage["plan"]["sized_by"] == "config" and [m["name"] for m in lineage["plan"]["members"]] == ["member-0", "member-1"]
    assert summary.plan.lengths["member-0"].epochs == 3 and summary.seconds > 0
    artifact = latest_artifact("train-summary").data
    assert "| member-1 | seed_cnn | 1 |" in artifact and "completed" in artifact
    assert lineage["code_version"] and lineage["packages"]["torch"] and lineage["prefect_flow_run_id"]


def test_members_trained_concurrently(trained):
    root, _, _ = trained
    records = [json.loads((root / "run" / "model" / "members" / f"member-{i}.json").read_text()) for i in range(2)]
    first, second = sorted(records, key=lambda r: r["started"])
    assert second["started"] < first["finished"]  # the second member started before the first one ended
    assert all(len(r["history"]) == r["epochs_run"] == CONFIG.train.epochs for r in records)
    assert all(r["stopped"] == "completed" and r["steps_run"] == r["planned_steps"] > 0 for r in records)
    expected = precision_name(autocast_dtype("auto", torch.device("cpu")))  # train.precision's default on this CPU
    assert all(r["precision"] == expected for r in records)


def test_rerun_with_the_same_run_skips_finished_members_and_refuses_another_config(trained):
    root, train, summary = trained
    before = (root / "run" / "model" / "members" / "member-0.pt").stat().st_mtime_ns
    assert train_flow(train).members == summary.members
    assert (root / "run" / "model" / "members" / "member-0.pt").stat().st_mtime_ns == before
    other = train.model_copy(update={"config": CONFIG.model_copy(update={"members": 3})})
    with pytest.raises(RunMismatchError, match="use a new --run"):
        train_flow(other)


@pytest.fixture(scope="module")
def evaluated(trained):
    root, train, _ = trained
    return root, train, evaluate_flow(EvaluateParams(run=train.run))


def test_evaluate_reports_ensemble_and_members_with_cis(evaluated):
    root, _, result = evaluated
    doc = json.loads((root / "run" / "metrics.json").read_text())
    assert set(doc["results"]) == {"ensemble", "member-0", "member-1"}
    for by_split in doc["results"].values():
        for split in ("val", "test"):
            point, ci = by_split[split]["point"], by_split[split]["ci"]
            for name in ("auc", "accuracy_at_op", "sensitivity_at_0.5", "specificity_at_op", "f1_at_op", "brier", "ece"):
                assert name in point
            assert ci["auc"][0] <= point["auc"] <= ci["auc"][1]
    assert result.test.point["auc"] > 0.8  # the synthetic task is learnable
    assert doc["ensemble"]["combiner"] in doc["combiner_val_auc"]
    assert set(doc["combiner_se_of_the_gap_to_the_best"]) == set(doc["combiner_val_auc"])  # the rule's record
    card = model_store.load_card(str(root / "run" / "model"))
    assert card.ensemble.combiner == doc["ensemble"]["combiner"]  # predict uses the fitted ensemble
    for name in ("index.html", "roc_test.png", "confusion_test.png", "reliability_test.png", "training_curves.png"):
        data = (root / "run" / "report" / name).read_bytes()
        assert len(data) > 1000, name
    page = (root / "run" / "report" / "index.html").read_text()
    assert "data:image/png;base64," in page and "95% CIs" in page  # self-contained


def test_evaluate_publishes_prefect_artifacts(evaluated):
    table = latest_artifact("evaluation-test")
    assert "ensemble" in str(table.data) and "auc" in str(table.data)
    assert "Full report" in latest_artifact("evaluation-report").data
    assert "index.html" in latest_artifact("evaluation-report-link").data
    plots = latest_artifact("evaluation-plots").data  # the PNGs inlined: the UI shows them without file access
    inlined = re.findall(r"!\[([a-z_]+\.png)\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", plots)
    assert [name for name, _ in inlined] == ["roc_test.png", "confusion_test.png", "reliability_test.png", "training_curves.png"]
    assert all(base64.b64decode(data).startswith(b"\x89PNG") for _, data in inlined)


def test_saved_and_loaded_model_predicts_identically(evaluated):
    root, train, _ = evaluated
    test = load_split(train.dataset, "test", ["abnormal", "normal"])
    first = EnsembleModel.load(train.run).predict_proba([test.images])
    second = EnsembleModel.load(str(root / "run" / "model")).predict_proba([test.images])
    np.testing.assert_array_equal(first, second)


def _rows(text: str) -> dict[str, dict]:
    return {r["path"]: r for r in csv.DictReader(io.StringIO(text))}


def test_predict_decodes_like_ingestion_and_never_crashes_on_bad_files(evaluated):
    root, train, _ = evaluated
    write(str(root / "src"), "junk/notes.txt", b"not a dicom file")
    out = root / "pred.csv"
    summary = predict_flow(PredictParams(model=train.run, source=str(root / "src"), out=str(out)))
    rows = _rows(out.read_text())
    labels = {r["path"]: r["label"] for r in read_csv(str(root / "src" / "labels.csv"))}
    assert list(next(iter(rows.values()))) == ["path", "predicted", "p_abnormal", "p_normal", "reason"]
    assert rows["junk/notes.txt"]["predicted"] == "" and rows["junk/notes.txt"]["reason"] == "not_dicom"
    assert summary.refused["not_dicom"] == 2 and summary.out == str(out)  # the junk file and labels.csv
    predicted = [r for p, r in rows.items() if p in labels]
    assert len(predicted) == len(labels) and all(r["reason"] == "" for r in predicted)
    assert all(abs(float(r["p_abnormal"]) + float(r["p_normal"]) - 1) < 1e-5 for r in predicted)
    accuracy = np.mean([r["predicted"] == labels[r["path"]] for r in predicted])
    assert accuracy > 0.75
    os.remove(root / "src" / "junk" / "notes.txt")


def test_predict_round_trip_with_model_and_source_on_s3(evaluated, s3_endpoint):
    root, train, _ = evaluated
    fs = storage.filesystem("s3://")
    if not fs.exists("medflow-models"):
        fs.mkdir("medflow-models")
    upload(str(root / "run" / "model"), "s3://medflow-models/chest/model")
    upload(str(root / "src"), "s3://medflow-models/incoming")
    remote = PredictParams(model="s3://medflow-models/chest", source="s3://medflow-models/incoming",
                           out="s3://medflow-models/out/pred.csv")
    predict_flow(remote)
    local = root / "pred-local.csv"
    predict_flow(PredictParams(model=train.run, source=str(root / "src"), out=str(local)))
    assert _rows(storage.read_bytes(remote.out).decode()) == _rows(local.read_text())


def test_predict_on_ray_matches_prediction_in_one_process(evaluated):
    """Files split over several Ray tasks come back as the same rows, in the same order."""
    root, train, _ = evaluated
    model, source = EnsembleModel.load(train.run), str(root / "src")
    spread, local = predict(model, source, chunk=7), predict_source(model, source)
    assert (spread.predicted, spread.refused) == (local.predicted, local.refused)
    assert sum(local.predicted.values()) > 7 * 3  # several chunks
    rows, expected = list(csv.reader(io.StringIO(spread.csv))), list(csv.reader(io.StringIO(local.csv)))
    assert [r[:2] + r[-1:] for r in rows] == [r[:2] + r[-1:] for r in expected]  # path, predicted, reason
    for row, want in zip(rows[1:], expected[1:], strict=True):
        assert [float(v or 0) for v in row[2:-1]] == pytest.approx([float(v or 0) for v in want[2:-1]], abs=1e-5)


def test_a_single_file_as_source_is_predicted(evaluated, s3_endpoint):
    """SOURCE may be one file (its row's path is the file name), locally and on S3."""
    root, train, _ = evaluated
    model, source = EnsembleModel.load(train.run), root / "src"
    folder = _rows(predict_source(model, str(source)).csv)
    rel = next(p for p, r in folder.items() if not r["reason"])
    name = rel.rsplit("/", 1)[-1]
    local = predict_source(model, str(source / rel))
    assert _rows(local.csv) == {name: {**folder[rel], "path": name}} and sum(local.predicted.values()) == 1
    fs = storage.filesystem("s3://")
    if not fs.exists("medflow-single"):
        fs.mkdir("medflow-single")
    fs.put(str(source / rel), f"medflow-single/in/{name}")
    assert predict(model, f"s3://medflow-single/in/{name}").csv == local.csv
