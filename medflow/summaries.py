"""What the CLI prints after each command: short, PHI-free summaries read from the typed results."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tasks.core import storage

if TYPE_CHECKING:  # types only: the data commands must not import torch, MONAI or matplotlib
    from flows.predict import PredictionSummary
    from tasks.evaluate.evaluation import EvaluationResult
    from tasks.ingest.summary import IngestSummary
    from tasks.serve.promotion import PromotionDecision
    from tasks.train.members import TrainSummary


def print_ingest(summary: IngestSummary, dataset_uri: str, rejects_uri: str) -> None:
    size, volumes = summary.image_size, summary.kind == "volume3d"
    print(f"dataset {dataset_uri}: version {summary.version}, " +
          (f"volumes {size}x{size}x{size}" if volumes else f"images {size}x{size}"))
    if summary.image_size_note:
        print(f"  note: {summary.image_size_note}")
    replaced = f", replaced {summary.replaced} (series whose files changed)" if summary.replaced else ""
    print(f"  inputs {summary.inputs}, added {summary.added}{replaced}, unchanged {summary.unchanged} "
          f"({summary.unchanged_not_read} known by fingerprint, not read), rejected {summary.rejected}")
    for reason, count in summary.rejected_by_reason.items():
        print(f"    {reason}: {count}")
    if summary.dropped_from_series:
        left_out = ", ".join(f"{n} {kind}" for kind, n in summary.dropped_from_series.items())
        print(f"  files left out of their series' volume: {left_out}")
    if summary.relabelled_not_applied:
        print(f"  note: {summary.relabelled_not_applied} already-ingested images have a new label in the CSV; "
              "labels of ingested images are not rewritten")
    audit = summary.audit
    print(f"  patients per split {audit.patients_per_split}, in several splits: {audit.patients_in_several_splits}")
    print(f"  rejects written to {rejects_uri}")


def print_training(summary: TrainSummary) -> None:
    plan = summary.plan
    print(f"run {summary.run}: dataset v{summary.dataset_version}, classes {summary.classes}")
    budget = f" of a {plan.budget_seconds / 60:.0f}-minute budget ({plan.train_seconds / 60:.1f} for training)" \
        if plan.budget_seconds and plan.train_seconds else ""
    count = len(summary.members)
    print(f"  trained {count} member{'s' if count != 1 else ''}, {plan.slots} at a time, in {summary.seconds / 60:.1f} minutes{budget}; "
          f"sized by {plan.sized_by}")
    for m in summary.members:
        boosted = f", boosting weight {m.boosting_weight:.2f}" if m.boosting_weight is not None else ""
        print(f"  {m.name} ({m.architecture}, seed {m.seed}): smoothed validation AUC {m.best_val_auc:.3f}, "
              f"{m.steps_run} of {m.planned_steps} steps ({m.epochs_run} epochs, {m.stopped}, {m.precision}){boosted}")
    print(f"  model written to {storage.join(summary.run, 'model')}")


def print_evaluation(result: EvaluationResult) -> None:
    from tasks.evaluate import report

    ens = result.ensemble
    print(f"ensemble: {ens.combiner}, {ens.calibration()}, operating point {ens.threshold:.3f} (fitted on validation)")
    for split in ("test", "val"):
        point, ci = getattr(result, split).point, getattr(result, split).ci
        print(f"  {split}: AUC {report.fmt(point['auc'], ci.get('auc'))}, "
              f"accuracy {report.fmt(point['accuracy_at_op'], ci.get('accuracy_at_op'))}, "
              f"sensitivity {report.fmt(point['sensitivity_at_op'], ci.get('sensitivity_at_op'))}, "
              f"specificity {report.fmt(point['specificity_at_op'], ci.get('specificity_at_op'))}")
    print(f"  report: {result.report}")
    print(f"  metrics: {result.metrics}")


def print_decision(decision: PromotionDecision) -> None:
    print(f"  promotion ({decision.task}): {'promoted' if decision.promoted else 'not promoted'} — {decision.reason}")
    print(f"  champion: {decision.champion_after}")


def print_predictions(summary: PredictionSummary) -> None:
    print(f"predictions written to {summary.out}: {sum(summary.predicted.values())} predicted {summary.predicted}, "
          f"{sum(summary.refused.values())} refused {summary.refused}")
