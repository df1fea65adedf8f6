"""Quality benchmark: datasets written as DICOM -> ingest -> train (default config) -> evaluate ->
predict on the test split's files; test AUC and accuracy beside the published MedMNIST v2 figures,
with what the training budget bought.

``--suite`` runs every dataset of the suite with the same defaults and no per-dataset settings:
PneumoniaMNIST (full) and a small-data variant (500 training images drawn at random with seed 0 from
PneumoniaMNIST's training split: its file is sorted by label, so its *first* 500 images are all
``normal``; the same validation and test splits), and VesselMNIST3D (brain MRA volumes written as MR
series, ingested with ``--volumes``; ``benchmarks/quality3d.py`` runs it alone).

Every choice is made on validation only: the members' checks, the ensemble's combiner, calibration
and operating point are fitted on the official validation split; the test split is touched once,
by ``predict``, to print the table.

Usage: python benchmarks/quality.py [--suite] [--only NAME] [--data PATH] [--vessel-data PATH] [--work DIR]
                                    [--config FILE] [--members N] [--epochs N]
"""

from __future__ import annotations

import argparse
import atexit
import csv
import os
import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import accuracy_score, roc_auc_score

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.pneumonia import CLASSES, DEFAULT_DATA, load, write_corpus, write_labels  # noqa: E402
from benchmarks.vessel import DEFAULT_VESSEL, VESSEL_CLASSES, load_volumes, write_series  # noqa: E402

PUBLISHED = {  # MedMNIST v2 (Yang et al. 2023), Table 3, test split: (AUC, ACC); full datasets only
    "pneumoniamnist": [("ResNet-18 (28)", 0.944, 0.854), ("ResNet-50 (224)", 0.962, 0.884),
                       ("auto-sklearn", 0.942, 0.855), ("AutoKeras", 0.947, 0.878),
                       ("Google AutoML Vision", 0.991, 0.946)],
    "vesselmnist3d": [("ResNet-18+2.5D", 0.748, 0.846), ("ResNet-18+3D", 0.874, 0.877), ("ResNet-18+ACS", 0.930, 0.928),
                      ("ResNet-50+2.5D", 0.751, 0.877), ("ResNet-50+3D", 0.907, 0.918), ("ResNet-50+ACS", 0.912, 0.858),
                      ("auto-sklearn", 0.910, 0.915), ("AutoKeras", 0.773, 0.894)],
}


@dataclass(frozen=True)
class Corpus:
    """A benchmark dataset: its pixels, labels and official splits, and how it becomes DICOM."""

    images: np.ndarray
    labels: np.ndarray
    splits: list[str]
    volumes: bool = False

    @property
    def classes(self) -> tuple[str, str]:
        return VESSEL_CLASSES if self.volumes else CLASSES

    def write(self, source: str) -> None:
        rows = write_series(source, self.images, self.labels, self.splits) if self.volumes else \
            write_corpus(source, self.images, self.labels, self.splits, 28, by_split=True)
        write_labels(os.path.join(source, "labels.csv"), rows)

    def test_truth(self) -> dict[str, int]:
        """Each test input's path in the predictions CSV (predicting on SOURCE/test), and its label."""
        name = "s{:05d}" if self.volumes else "img{:05d}.dcm"
        return {name.format(i): int(y) for i, (y, s) in enumerate(zip(self.labels, self.splits, strict=True)) if s == "test"}
SMALL_TRAIN = 500


@dataclass
class Outcome:
    name: str
    auc: float
    acc: float
    seconds: dict[str, float]
    lines: list[str] = field(default_factory=list)  # what the budget bought, members, ensemble
    acc_at_half: float = float("nan")  # accuracy of p >= 0.5, the published figures' rule (argmax)


def small_draw(train_rows: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """``count`` of ``train_rows`` drawn at random: the small variant's training images."""
    return np.random.default_rng(seed).permutation(train_rows)[:count]


def small_variant(images: np.ndarray, labels: np.ndarray, splits: list[str], seed: int = 0) -> tuple:
    """``SMALL_TRAIN`` training images drawn at random (the file is sorted by label), every val and test image."""
    train = np.flatnonzero(np.array(splits) == "train")
    keep = np.sort(np.r_[small_draw(train, SMALL_TRAIN, seed), np.flatnonzero(np.array(splits) != "train")])
    return images[keep], labels[keep], [splits[i] for i in keep]


RISING = 0.001  # smoothed validation AUC gained over the last quarter of a member's checks


def smoothed_aucs(history: list[dict]) -> list[float]:
    """A member's smoothed validation AUC at each check (the raw AUC in histories without it)."""
    return [h.get("val_auc_smoothed", h["val_auc"]) for h in history]


def late_gain(history: list[dict]) -> float:
    """How much the smoothed validation AUC rose over the last quarter of the checks (above
    ``RISING``: the member was still learning when its run ended)."""
    smoothed = smoothed_aucs(history)
    quarter = max(1, len(smoothed) // 4)
    return smoothed[-1] - max(smoothed[:-quarter]) if len(smoothed) > quarter else float("nan")


def end_trend(history: list[dict]) -> str:
    """Whether a member was still learning when its run ended: its smoothed validation AUC gained more
    than ``RISING`` over the last quarter of its checks *and* its last check is its highest. A member
    that gained in its last quarter but peaked before its end and fell since is not rising at its end."""
    smoothed = smoothed_aucs(history)
    gain, top = late_gain(history), int(np.argmax(smoothed))
    if not gain > RISING:
        return f"not rising at the end (last-quarter gain {gain:+.4f})"
    if smoothed[-1] < smoothed[top]:
        return (f"not rising at the end (last-quarter gain {gain:+.4f}, but it peaked at epoch {history[top]['epoch'] + 1} "
                f"and ended {smoothed[top] - smoothed[-1]:.4f} below)")
    return f"STILL RISING at the end (last-quarter gain {gain:+.4f})"


def run_one(name: str, corpus: Corpus, work: str, args) -> Outcome:
    from flows.evaluate import EvaluateParams, evaluate_flow
    from flows.ingest import IngestParams, ingest_flow
    from flows.predict import PredictParams, predict_flow
    from flows.train import TrainParams, train_flow
    from tasks.model.config import load_config
    from tasks.model.store import load_card

    source, times = os.path.join(work, "source"), {}
    t0 = time.perf_counter()
    if not os.path.exists(os.path.join(source, "labels.csv")):
        corpus.write(source)
    times["write DICOM corpus"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    ingest = IngestParams(source=source, labels=os.path.join(source, "labels.csv"), dataset=os.path.join(work, "dataset"),
                          rejects=os.path.join(work, "rejects.csv"), image_size=args.image_size, volumes=corpus.volumes)
    summary = ingest_flow(ingest)
    times["ingest"] = time.perf_counter() - t0
    config = load_config(args.config, {"members": args.members, "train.epochs": args.epochs})
    run = os.path.join(work, "runs", f"run-{int(time.time())}")
    t0 = time.perf_counter()
    trained = train_flow(TrainParams(dataset=ingest.dataset, run=run, config=config))
    times["train"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    evaluation = evaluate_flow(EvaluateParams(run=run))
    times["evaluate"] = time.perf_counter() - t0
    times["train + evaluate"] = times["train"] + times["evaluate"]
    t0 = time.perf_counter()
    out = os.path.join(work, "test-predictions.csv")
    predict_flow(PredictParams(model=run, source=os.path.join(source, "test"), out=out))
    times["predict (test split)"] = time.perf_counter() - t0

    truth, classes = corpus.test_truth(), corpus.classes
    with open(out, newline="") as f:
        preds = [r for r in csv.DictReader(f) if not r["reason"]]
    y = np.array([truth[r["path"]] for r in preds])
    p = np.array([float(r[f"p_{classes[1]}"]) for r in preds])
    predicted = np.array([classes.index(r["predicted"]) for r in preds])
    plan, ens = trained.plan, evaluation.ensemble
    budget = f"{plan.budget_seconds / 60:.0f}-minute budget" if plan.budget_seconds else "no budget"
    unit = "series" if corpus.volumes else "images"
    lines = [f"dataset: {summary.added} {unit} ingested, {len(y)} test {unit} predicted",
             f"plan ({budget}, sized by {plan.sized_by}): {len(trained.members)} members, {plan.slots} at a time, "
             f"measured s/step {({a: round(s, 3) for a, s in plan.seconds_per_step.items()})}, augmentation "
             f"{plan.augment_seconds:.3f} s/batch; estimated {plan.estimated_seconds or 0:.0f} s of training"]
    for m in trained.members:
        rising = end_trend(m.history)
        lines.append(f"  {m.name} {m.architecture}: {m.steps_run}/{m.planned_steps} steps ({m.epochs_run} epochs, "
                     f"{m.stopped}, {m.precision}, EMA decay {m.ema_decay or 0:.4f}), smoothed val AUC {m.best_val_auc:.4f}, {rising}")
    views = load_card(os.path.join(run, "model")).preprocessing  # the card as evaluation left it
    lines.append(f"ensemble: {ens.combiner}, {ens.calibration()}, operating point {ens.threshold:.3f}, test-time "
                 f"flip {views.tta_hflip}, zoom {views.tta_zoom} (chosen on validation); validation AUC {evaluation.val.point['auc']:.4f}")
    ci = evaluation.test.ci["auc"]
    lines.append(f"test AUC 95% CI [{ci[0]:.3f}, {ci[1]:.3f}]")
    return Outcome(name, roc_auc_score(y, p), accuracy_score(y, predicted), times, lines, accuracy_score(y, p >= 0.5))


SUITE = {  # name -> its corpus, loaded when it runs
    "pneumoniamnist": lambda args: Corpus(*load(args.data, None)),
    "pneumoniamnist-500": lambda args: Corpus(*small_variant(*load(args.data, None))),
    "vesselmnist3d": lambda args: Corpus(*load_volumes(args.vessel_data), volumes=True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", action="store_true", help="every dataset of the suite, one after another")
    parser.add_argument("--only", choices=["pneumoniamnist", "pneumoniamnist-500", "vesselmnist3d"],
                        help="one dataset of the suite")
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--vessel-data", default=DEFAULT_VESSEL)
    parser.add_argument("--work", help="working folder (default: a new temporary one)")
    parser.add_argument("--config", help="run config YAML (default: medflow's defaults)")
    parser.add_argument("--members", type=int)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--image-size", type=int, default=28)
    args = parser.parse_args()
    os.environ.setdefault("MEDFLOW_PSEUDONYM_KEY", secrets.token_urlsafe(32))
    from flows.startup import environment_defaults

    environment_defaults()
    from flows.startup import start_services

    work = args.work
    if work is None:  # a temporary folder goes when the run ends; pass --work to keep the runs
        work = tempfile.mkdtemp(prefix="medflow-quality-")
        atexit.register(shutil.rmtree, work, True)
    start_services()
    names = [args.only] if args.only else list(SUITE) if args.suite else ["pneumoniamnist"]
    outcomes = [run_one(name, SUITE[name](args), os.path.join(work, name), args) for name in names]

    for outcome in outcomes:
        print(f"\n== {outcome.name}")
        for line in outcome.lines:
            print(line)
        print("wall time (s), this machine: " + ", ".join(f"{k} {v:.0f}" for k, v in outcome.seconds.items()))
    print("ACC: of the predicted labels, at the operating point chosen on validation (Youden's J); "
          "ACC@0.5: of p >= 0.5 (the calibrated probabilities' likelier class), the published rows' rule (argmax)")
    print(f"\n{'dataset':<20} {'model':<34} {'AUC':>7} {'ACC':>7} {'ACC@0.5':>8}  train+evaluate")
    for outcome in outcomes:
        print(f"{outcome.name:<20} {'medflow defaults (predict)':<34} {outcome.auc:7.3f} {outcome.acc:7.3f} "
              f"{outcome.acc_at_half:8.3f}  {outcome.seconds['train + evaluate'] / 60:.1f} min")
        for model, auc, acc in PUBLISHED.get(outcome.name, []):
            verdict = "; ".join(f"{what} {'beaten' if ours > theirs else 'NOT beaten'}" for what, ours, theirs in (
                ("AUC", outcome.auc, auc), ("ACC@0.5", outcome.acc_at_half, acc), ("ACC", outcome.acc, acc)))
            print(f"{'':<20} {model + ' (published)':<34} {auc:7.3f} {acc:7.3f}           {verdict}")


if __name__ == "__main__":
    main()
