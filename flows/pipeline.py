"""retrain_flow: ingest (incremental) -> train -> evaluate -> promote. What the nightly deployment runs."""

from __future__ import annotations

import hashlib

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel, Field

from flows.evaluate import EvaluateParams, evaluate_flow
from flows.ingest import IngestParams, ingest_flow
from flows.retry import IO_RETRIES, QUIET
from flows.train import TrainParams, train_flow
from flows.uris import Uri
from tasks.core import storage
from tasks.data import dataset
from tasks.model import runs
from tasks.model.config import EnsembleConfig
from tasks.serve import promotion


class PipelineParams(BaseModel):
    """The retraining pipeline: where data comes from and goes, how to train, when to promote."""

    source: Uri = Field(description="folder or s3:// prefix of DICOM files")
    labels: Uri = Field(description="labels CSV: path, label[, split]")
    dataset: Uri = Field(description="dataset location (path or s3://)")
    rejects: Uri = Field(description="rejects CSV (outside the dataset: it may hold source paths)")
    runs: Uri = Field(description="folder (path or s3://) that holds one run folder per dataset version and config")
    registry: Uri = Field(description="model registry (path or s3://): the champion pointer per task")
    task: str = Field("default", description="name of the prediction task: one champion per task")
    image_size: int = Field(128, ge=8, le=2048)
    config: EnsembleConfig = Field(default_factory=EnsembleConfig, description="training and evaluation")
    promotion_margin: float = Field(0.0, description="promote only if the lower 95% bound of the AUC gain exceeds this")
    force_retrain: bool = Field(False, description="train even if this dataset version and config were trained already")


def config_digest(config: EnsembleConfig) -> str:
    return hashlib.sha256(config.model_dump_json().encode()).hexdigest()[:10]


@task(**IO_RETRIES, **QUIET)
def plan_run(params: PipelineParams, version: int, flow_run_id: str) -> str | None:
    """The run folder for this dataset version and config; None when it was evaluated already.

    The folder is claimed with an exclusive create: a retry of the same flow run resumes in it, but
    another pipeline run working on the same version and config at the same time trains in a folder
    of its own (suffixed with its flow run id), so two runs never write into one run folder."""
    run = storage.join(params.runs, params.task, f"v{version}-{config_digest(params.config)}")
    own = f"{run}-{flow_run_id[:8]}"
    if params.force_retrain:
        return own
    if storage.exists(storage.join(run, runs.METRICS_FILE)):
        return None
    claim = storage.join(run, "claimed-by.txt")
    if storage.create_exclusive(claim, flow_run_id.encode()) or storage.read_bytes(claim).decode() == flow_run_id:
        return run
    return own


@task(**IO_RETRIES, **QUIET)
def promote(params: PipelineParams, run: str) -> dict:
    return promotion.promote_run(params.registry, params.task, run, params.promotion_margin,
                                 params.config.evaluation.bootstrap_resamples)


def ingest_stage(params: PipelineParams) -> dict:
    """Incremental ingest; if another run published meanwhile, once more (it then adds what is still new)."""
    ingest = IngestParams(source=params.source, labels=params.labels, dataset=params.dataset, rejects=params.rejects,
                          image_size=params.image_size)
    try:
        return ingest_flow(ingest)
    except dataset.ConcurrentPublishError:
        get_run_logger().info("another run published a dataset version meanwhile; ingesting again")
        return ingest_flow(ingest)


def decision_markdown(decision: dict) -> str:
    lines = [f"# Promotion: task `{decision['task']}`", "",
             f"**{'promoted' if decision['promoted'] else 'not promoted'}** — {decision['reason']}", "",
             "| | |", "|---|---|"]
    for key in ("challenger", "champion_before", "champion_after", "challenger_auc", "champion_auc", "delta_auc",
                "delta_ci95", "margin", "images", "patients", "dataset_version"):
        if key in decision:
            lines.append(f"| {key} | {decision[key]} |")
    return "\n".join(lines)


@flow(name="retrain", log_prints=False)
def retrain_flow(params: PipelineParams) -> dict:
    """Ingest what arrived, train and evaluate an ensemble on the new version, promote it if it is
    really better than the champion. A version and config already evaluated are not retrained."""
    from prefect import runtime

    logger = get_run_logger()
    ingest = ingest_stage(params)
    version = ingest["version"]
    if version is None:
        raise ValueError(f"dataset {params.dataset} is empty: nothing was ingested")
    run = plan_run(params, version, str(runtime.flow_run.id or "local"))
    if run is None:
        logger.info("dataset v%d with this config was trained and evaluated already; nothing to do", version)
        return {"dataset_version": version, "ingest": ingest, "run": None, "promotion": None}
    train_flow(TrainParams(dataset=params.dataset, run=run, version=version, config=params.config))
    evaluation = evaluate_flow(EvaluateParams(run=run))
    decision = promote(params, run)
    create_markdown_artifact(key=f"promotion-{params.task}", markdown=decision_markdown(decision),
                             description=f"{params.task}: {'promoted' if decision['promoted'] else 'kept the champion'}")
    logger.info("promotion: %s (%s)", decision["promoted"], decision["reason"])
    return {"dataset_version": version, "ingest": ingest, "run": run, "report": evaluation["report"],
            "test_auc": evaluation["test"]["point"]["auc"], "promotion": decision}
