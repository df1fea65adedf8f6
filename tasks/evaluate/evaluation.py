"""Evaluating a trained run: members' predictions on val and test, the ensemble fitted on val,
every model scored with patient-level bootstrap CIs, and the report written into the run."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, Field
from sklearn.metrics import roc_curve

from tasks.core import metrics, storage
from tasks.data.samples import Samples, Streamed
from tasks.evaluate import report
from tasks.model import ensemble, ensemble_fit
from tasks.model import store as model_store
from tasks.model.config import EvaluationConfig
from tasks.model.ensemble import EnsembleSpec
from tasks.model.folders import RunFolder
from tasks.model.runs import TrainedRun
from tasks.model.store import EnsembleModel
from tasks.model.views import views

ENSEMBLE = "ensemble"


class SplitScores(BaseModel):
    """One model on one split: point metrics and their bootstrap 95% CIs."""

    point: dict[str, Any]
    ci: dict[str, list[float] | None]


class EvaluationResult(BaseModel):
    """What ``medflow evaluate`` reports: the fitted ensemble, its val and test scores, where the files are."""

    report: str = Field(description="the HTML report")
    metrics: str = Field(description="metrics.json: every model on every split")
    ensemble: EnsembleSpec
    test: SplitScores
    val: SplitScores


@dataclass
class Evaluation:
    """The metrics document (also ``RUN_URI/metrics.json``) and the report's PNG plots by file name."""

    doc: dict
    plots: dict[str, bytes]
    report: str

    def result(self, metrics_uri: str) -> EvaluationResult:
        scores = self.doc["results"][ENSEMBLE]
        return EvaluationResult(report=self.report, metrics=metrics_uri, ensemble=EnsembleSpec.model_validate(self.doc["ensemble"]),
                                test=SplitScores.model_validate(scores["test"]), val=SplitScores.model_validate(scores["val"]))


def score(probs: np.ndarray, labels: np.ndarray, weights: np.ndarray, positive: int, threshold: float) -> dict:
    """Point metrics and bootstrap 95% CIs of one model on one split."""
    return {"point": metrics.compute(probs, labels, positive, threshold),
            "ci": metrics.bootstrap(probs, labels, weights, positive, threshold)}


def score_all(jobs: dict[tuple[str, str], tuple[np.ndarray, np.ndarray, np.ndarray, int, float]]) -> dict[str, dict]:
    """``{(model, split): (probs, labels, weights, positive, threshold)}`` -> ``{model: {split: score}}``."""
    results: dict[str, dict] = {}
    for (name, split), args in jobs.items():
        results.setdefault(name, {})[split] = score(*args)
    return results


@dataclass
class TestTimeViews:
    """Evaluation's test-time augmentation: the chosen flip and zoom, each candidate's validation AUC
    of the members' mean (by name: plain, hflip, zoom, hflip+zoom) and the standard error of its gap to
    the best candidate's, and the chosen members' probabilities."""

    hflip: bool
    zoom: float | None
    val_auc: dict[str, float]
    gap_se: dict[str, float]
    member_probs: np.ndarray

    def record(self) -> dict:
        return {"hflip": self.hflip, "zoom": self.zoom, "val_auc_of_the_members_mean": self.val_auc,
                "se_of_the_gap_to_the_best": self.gap_se}


def _settings(setting: bool | str) -> list[bool]:
    return [False, True] if setting == "auto" else [bool(setting)]


def view_scores(mean: np.ndarray, labels: np.ndarray, weights: np.ndarray, positive: int) -> tuple[tuple[float, float], np.ndarray]:
    """A set of views' validation score, as ``metrics.simplest_within_noise`` ranks it: (AUC, minus log-loss) of the
    members' ``mean``, each ``metrics.rank_score``, and its AUC in each resample (row) of ``weights``."""
    return ((metrics.rank_score(metrics.auc(mean, labels, positive)), metrics.rank_score(-metrics.log_loss(mean, labels))),
            metrics.resampled_auc(mean, labels, weights, positive))


def choose_tta(model: EnsembleModel, val: Samples, evaluation: EvaluationConfig, positive: int,
               predicted: dict | None = None) -> TestTimeViews:
    """Test-time flip and zoom, or neither: as configured, or (``auto``) by ``metrics.simplest_within_noise`` on
    validation: a view is added only where the members' mean gains more validation AUC than validation
    can resolve (``tta_noise_se`` standard errors of the gain, patients resampled). Every view is
    predicted once, in one pass over validation, unless ``predicted`` (``model.view_probs`` of ``val``
    for these views and maybe others) is given."""
    factor = evaluation.tta_zoom_factor
    candidates = [(hflip, factor if zoom else None) for zoom in _settings(evaluation.tta_zoom)
                  for hflip in _settings(evaluation.tta_hflip)]  # fewest views first
    per_view = predicted or model.view_probs(val.batches(), list(dict.fromkeys(v for c in candidates for v in views(*c))))
    patients = np.arange(len(val.labels)) if val.patients is None else np.asarray(val.patients)
    weights = metrics.patient_weights(patients, evaluation.bootstrap_resamples, evaluation.seed)
    probs, scores, resampled = {}, {}, {}
    for candidate in candidates:
        probs[candidate] = np.mean([per_view[v] for v in views(*candidate)], axis=0)
        scores[candidate], resampled[candidate] = view_scores(probs[candidate].mean(axis=0), val.labels, weights, positive)
    chosen, gap_se = metrics.simplest_within_noise(scores, resampled, evaluation.tta_noise_se)
    names = {c: "+".join(n for n, on in (("hflip", c[0]), ("zoom", c[1])) if on) or "plain" for c in candidates}
    return TestTimeViews(*chosen, {names[c]: scores[c][0] for c in candidates},
                         {names[c]: round(gap_se[c], 6) for c in candidates}, probs[chosen])


def evaluate(run: TrainedRun) -> Evaluation:
    """Fit the ensemble on validation, score everything, update the model card, write the report.
    The plots are also written to ``RUN_URI/report/``."""
    info, config, lineage = run.info, run.config, run.lineage
    model_uri = info.folder.model.uri
    model = EnsembleModel.load(model_uri)
    evaluation = config.evaluation
    positive = metrics.positive_index(info.classes, evaluation.positive_class)
    splits = {s: Streamed(info.dataset, s, info.classes, info.version, patients=True) for s in ("val", "test")}
    if not len(splits["test"]):
        raise ValueError(f"dataset {info.dataset} v{info.version} has no test rows to report on")
    val = splits["val"]
    tta = choose_tta(model, val, evaluation, positive)
    model.card.preprocessing.tta_hflip, model.card.preprocessing.tta_zoom = tta.hflip, tta.zoom
    member_probs = {"val": tta.member_probs, "test": model.member_probs(splits["test"].batches())}  # pixels streamed
    boosting = [m.boosting_weight for m in model.card.members]
    fitted = ensemble_fit.fit(member_probs["val"], val.labels, val.patients, positive, tuple(evaluation.combiners),
                          evaluation.temperature_scaling, evaluation.seed,
                          boosting_weights=boosting if all(w is not None for w in boosting) else None,
                          class_bias=evaluation.class_bias, noise_se=evaluation.combiner_noise_se,
                          resamples=evaluation.bootstrap_resamples)
    spec, candidates, ensemble_val = fitted.spec, fitted.candidate_auc, fitted.val_probs
    model.card.ensemble = spec
    model_store.save_card(model_uri, model.card)  # predict now uses the fitted ensemble
    probs = {(ENSEMBLE, "val"): ensemble_val, (ENSEMBLE, "test"): ensemble.combine(member_probs["test"], spec)}
    thresholds = {ENSEMBLE: spec.threshold}
    for m, member in enumerate(model.card.members):
        thresholds[member.name] = metrics.operating_point(member_probs["val"][m], val.labels, positive)
        for s in splits:
            probs[(member.name, s)] = member_probs[s][m]
    weights = {s: metrics.patient_weights(split.patients, evaluation.bootstrap_resamples, evaluation.seed)
               for s, split in splits.items()}  # the same resamples for every model: paired comparisons
    results = score_all({(name, s): (p, splits[s].labels, weights[s], positive, thresholds[name])
                         for (name, s), p in probs.items()})
    doc = {
        "run_name": info.run.rstrip("/").rsplit("/", 1)[-1], "run": info.run, "classes": info.classes,
        "positive": positive, "ensemble": spec.model_dump(), "combiner_val_auc": candidates,
        "combiner_se_of_the_gap_to_the_best": fitted.gap_se,
        "tta": tta.record(),
        "bootstrap_resamples": evaluation.bootstrap_resamples,
        "sizes": {s: {"images": len(split), "patients": len(set(split.patients))} for s, split in splits.items()},
        "results": {name: results[name] for name in [ENSEMBLE, *[m.name for m in model.card.members]]},
        "lineage_text": json.dumps({k: v for k, v in lineage.items() if k != "packages"}, indent=2, default=str),
    }
    test = splits["test"]
    plots = _plots(doc, probs, test, weights["test"], positive, model)
    return Evaluation(doc, plots, write_report(info.run, doc, plots))


def _plots(doc: dict, probs: dict, test: Streamed, weights: np.ndarray, positive: int, model: EnsembleModel) -> dict[str, bytes]:
    ens_test = probs[(ENSEMBLE, "test")]
    plots = {}
    if ens_test.shape[1] == 2:
        members = {}
        for member in model.card.members:
            fpr, tpr, _ = roc_curve(test.labels == positive, probs[(member.name, "test")][:, positive])
            members[member.name] = {"fpr": fpr, "tpr": tpr}
        band = metrics.roc_band(ens_test, test.labels, weights, positive)
        plots["roc_test.png"] = report.roc_plot(band, members, "ROC, test split")
    plots["confusion_test.png"] = report.confusion_plot(doc["results"][ENSEMBLE]["test"]["point"]["confusion_matrix"],
                                                        doc["classes"], "ensemble, test, at the operating point")
    plots["reliability_test.png"] = report.reliability_plot(ens_test, test.labels, positive, "reliability, test split")
    if test.dims == 3:
        plots["montage_test.png"] = _montage(test, ens_test, doc, positive)
    model_uri = RunFolder(doc["run"]).model.uri
    plots["training_curves.png"] = report.curves_plot([model_store.load_record(model_uri, m.name) for m in model.card.members])
    return plots


def _montage(test: Streamed, probs: np.ndarray, doc: dict, positive: int, per_kind: int = 3) -> bytes:
    """Mid-slices of the first few correctly and wrongly predicted test series."""
    predicted = metrics.predict_labels(probs, doc["ensemble"]["threshold"], positive)
    right = np.flatnonzero(predicted == test.labels)[:per_kind]
    wrong = np.flatnonzero(predicted != test.labels)[:per_kind]
    rows = np.sort(np.r_[right, wrong])
    volumes = [volume for volume, _ in test.images(rows, None)]
    classes = doc["classes"]
    captions = [f"{'right' if predicted[r] == test.labels[r] else 'WRONG'}: true {classes[test.labels[r]]}, "
                f"predicted {classes[predicted[r]]} (p={probs[r, positive]:.2f})" for r in rows]
    return report.montage_plot(volumes, captions, "test series, correct and wrong")


def write_report(run_uri: str, doc: dict, plots: dict[str, bytes]) -> str:
    """PNG files and ``index.html`` under ``RUN_URI/report/``; ``metrics.json`` in the run. Returns the page's URI."""
    folder = RunFolder(run_uri)
    for name, png in plots.items():
        storage.write_bytes_atomic(folder.report_file(name), png)
    storage.write_bytes_atomic(folder.report_page, report.html_page(doc, plots).encode())
    storage.write_json(folder.metrics, doc)  # last: the run counts as evaluated once it exists
    return folder.report_page
