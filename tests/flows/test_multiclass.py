"""Three classes through the real flows: ingest -> train (Ray Train) -> evaluate -> predict.

The binary synthetic corpus is relabelled: lesions stay ``abnormal``, images without one are split
into ``clear`` and ``normal`` at random, so the networks can tell one class from the other two.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from flows.evaluate import EvaluateParams, evaluate_flow
from flows.ingest import IngestParams, ingest_flow
from flows.predict import PredictParams, predict_flow
from flows.train import TrainParams, train_flow
from medflow import synthetic
from tasks.model.config import EnsembleConfig
from tests.corpora import read_csv

CLASSES = ["abnormal", "clear", "normal"]
CONFIG = EnsembleConfig.model_validate({
    "members": 2, "architectures": ["seed_cnn"],
    "train": {"epochs": 2, "batch_size": 32, "learning_rate": 3e-3, "augment": {"affine": 0.3, "crop": 0}},
    "evaluation": {"bootstrap_resamples": 200},
})


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, ray_local):
    root = tmp_path_factory.mktemp("multiclass")
    labels = synthetic.write_corpus(str(root / "src"), n_patients=48, images_per_patient=4, size=32, seed=3)
    rng = np.random.default_rng(0)
    rows = [(r["path"], r["label"] if r["label"] == "abnormal" else str(rng.choice(["clear", "normal"])))
            for r in read_csv(labels)]
    synthetic.write_labels(labels, rows)
    ingest = IngestParams(source=str(root / "src"), labels=labels, dataset=str(root / "ds"),
                          rejects=str(root / "rejects.csv"), image_size=32)
    ingest_flow(ingest)
    train = TrainParams(dataset=ingest.dataset, run=str(root / "run"), config=CONFIG)
    train_flow(train)
    return root, evaluate_flow(EvaluateParams(run=train.run))


def test_evaluation_scores_every_class(evaluated):
    root, _ = evaluated
    doc = json.loads((root / "run" / "metrics.json").read_text())
    assert doc["classes"] == CLASSES
    for by_split in doc["results"].values():
        for split in ("val", "test"):
            point = by_split[split]["point"]
            assert np.array(point["confusion_matrix"]).shape == (3, 3)
            assert 0 <= point["auc"] <= 1  # one-vs-rest macro, defined: every class is in each split
            assert 0 <= point["balanced_accuracy_at_op"] <= 1 and 0 <= point["brier"] <= 2
    ensemble_test = doc["results"]["ensemble"]["test"]["point"]
    assert ensemble_test["auc"] > 0.6  # abnormal is learnable; clear vs normal is a coin toss
    report = root / "run" / "report"
    assert (report / "confusion_test.png").stat().st_size > 1000 and (report / "index.html").exists()
    assert not (report / "roc_test.png").exists()  # the ROC plot is drawn for binary tasks only


def test_predict_writes_a_probability_per_class(evaluated):
    root, _ = evaluated
    out = root / "pred.csv"
    predict_flow(PredictParams(model=str(root / "run"), source=str(root / "src"), out=str(out)))
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 48 * 4 + 1  # every image, and the labels CSV refused with a reason
    predicted = [r for r in rows if not r["reason"]]
    assert len(predicted) == 48 * 4
    for r in predicted:
        assert r["predicted"] in CLASSES
        assert sum(float(r[f"p_{c}"]) for c in CLASSES) == pytest.approx(1, abs=1e-4)
