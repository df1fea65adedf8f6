"""Scoring one model with bootstrap CIs, the typed result, and the report built from a metrics document."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from tasks.core import metrics
from tasks.evaluate import report
from tasks.evaluate.evaluation import ENSEMBLE, Evaluation, score
from tasks.model.ensemble import EnsembleSpec


def scored_split(seed: int = 0, n: int = 120):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    p1 = np.clip(0.3 * labels + rng.uniform(0, 0.7, n), 0, 1)
    probs = np.stack([1 - p1, p1], axis=1)
    patients = np.array([f"p{i // 2}" for i in range(n)])  # two images per patient
    return probs, labels, patients


def test_score_gives_sklearns_auc_inside_its_patient_level_ci():
    probs, labels, patients = scored_split()
    weights = metrics.patient_weights(patients, 200, seed=0)
    result = score(probs, labels, weights, positive=1, threshold=0.5)
    assert abs(result["point"]["auc"] - roc_auc_score(labels, probs[:, 1])) < 1e-12
    low, high = result["ci"]["auc"]
    assert low < result["point"]["auc"] < high and high - low < 0.3


def metrics_doc() -> dict:
    probs, labels, patients = scored_split()
    weights = metrics.patient_weights(patients, 100, seed=0)
    scores = {s: score(probs, labels, weights, 1, 0.5) for s in ("val", "test")}
    return {"run_name": "v0-abc", "run": "/runs/v0-abc", "classes": ["normal", "pneumonia"], "positive": 1,
            "ensemble": EnsembleSpec(combiner="weighted", temperature=1.5, bias=[0.0, -0.75],
                                     threshold=0.4).model_dump(),
            "combiner_val_auc": {"mean": 0.8, "weighted": 0.81}, "bootstrap_resamples": 100,
            "sizes": {s: {"images": 120, "patients": 60} for s in ("val", "test")},
            "results": {ENSEMBLE: scores, "member-0": scores}, "lineage_text": '{"dataset_version": 0}'}


def test_the_typed_result_reads_the_ensemble_from_the_metrics_document():
    doc = metrics_doc()
    result = Evaluation(doc, {}, "/runs/v0-abc/report/index.html").result("/runs/v0-abc/metrics.json")
    assert result.ensemble.combiner == "weighted" and result.ensemble.threshold == 0.4
    assert result.test.point["auc"] == doc["results"][ENSEMBLE]["test"]["point"]["auc"]
    assert result.val.ci["auc"] == doc["results"][ENSEMBLE]["val"]["ci"]["auc"]


def test_report_tables_markdown_and_page():
    doc = metrics_doc()
    rows = report.table_rows(doc["results"], "test")
    assert [r[0] for r in rows] == [ENSEMBLE, "member-0"] and len(rows[0]) == 1 + len(report.HEADLINE)
    auc = doc["results"][ENSEMBLE]["test"]["point"]["auc"]
    assert rows[0][1].startswith(f"{auc:.3f} [")
    assert report.fmt(float("nan")) == "n/a" and report.fmt(0.5, [0.4, 0.6]) == "0.500 [0.400, 0.600]"
    md = report.markdown(doc, "/runs/v0-abc/report/index.html")
    assert "**weighted**, temperature 1.50, class bias [0.0, -0.75]" in md and "p(pneumonia)" in md
    assert md.endswith("Full report: /runs/v0-abc/report/index.html")
    probs, labels, _ = scored_split()
    plots = {"reliability_test.png": report.reliability_plot(probs, labels, 1, "reliability"),
             "confusion_test.png": report.confusion_plot([[50, 10], [12, 48]], doc["classes"], "confusion")}
    assert all(png.startswith(b"\x89PNG") for png in plots.values())
    page = report.html_page(doc, plots)
    assert page.count("data:image/png;base64,") == 2 and "<b>pneumonia</b>" in page and "dataset_version" in page
    assert "temperature 1.50, class bias [0.0, -0.75], operating point 0.400" in page
    assert report.plots_markdown(plots).count("![") == 2
