"""retrain_flow: ingest (incremental) -> train -> evaluate -> promote. What the nightly deployment runs."""

from __future__ import annotations

import hashlib

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel, Field, model_validator

from flows import startup
from flows.cancellation import STOPPABLE
from flows.evaluate import EvaluateParams, evaluate_flow
from flows.ingest import IngestParams, ingest_flow
from flows.retry import IO_RETRIES, QUIET
from flows.train import TrainParams, train_flow
from flows.uris import Uri
from tasks.core import storage
from tasks.data import dataset
from tasks.evaluate.evaluation import EvaluationResult
from tasks.ingest.summary import IngestSummary
from tasks.model.config import EnsembleConfig
from tasks.model.folders import RunFolder
from tasks.serve import promotion
from tasks.serve.promotion import PromotionDecision
from tasks.train.members import TrainSummary


class PipelineParams(BaseModel):
    """The retraining pipeline: where data comes from and goes, how to train, when to promote."""

    ingest: IngestParams = Field(description="what to ingest and how: source, labels, dataset, rejects, image size, splits")
    runs: Uri = Field(description="folder (path or s3://) that holds one run folder per dataset version and config")
    registry: Uri = Field(description="model registry (path or s3://): the champion pointer per task")
    task: str = Field("default", description="name of the prediction task: one champion per task")
    config: EnsembleConfig = Field(default_factory=EnsembleConfig, description="training and evaluation")
    promotion_margin: float = Field(0.0, description="promote only if the lower 95% bound of the AUC gain exceeds this")
    force_retrain: bool = Field(False, description="train even if this dataset version and config were trained already")

    @model_validator(mode="before")
    @classmethod
    def nest_ingest_fields(cls, data: object) -> object:
        """Ingest fields given at the top level (the flat form of earlier pipeline files) move into ``ingest``."""
        if isinstance(data, dict):
            flat = {k: data[k] for k in IngestParams.model_fields if k in data}
            if flat:
                data = {k: v for k, v in data.items() if k not in flat}
                nested = data.get("ingest") or {}
                data["ingest"] = {**flat, **(nested.model_dump() if isinstance(nested, BaseModel) else nested)}
        return data


class PipelineResult(BaseModel):
    """One pipeline run: the ingest, and (unless this version and config were evaluated already) the
    training, the evaluation and the promotion decision."""

    dataset_version: int
    ingest: IngestSummary
    run: str | None = None
    training: TrainSummary | None = None
    evaluation: EvaluationResult | None = None
    promotion: PromotionDecision | None = None


def config_digest(config: EnsembleConfig) -> str:
    return hashlib.sha256(config.model_dump_json().encode()).hexdigest()[:10]


@task(**IO_RETRIES, **QUIET)
def plan_run(params: PipelineParams, version: int, flow_run_id: str) -> str | None:
    """The run folder for this dataset version and config; None when it was evaluated already.

    The folder is claimed with an exclusive create: a retry of the same flow run resumes in it, but
    another pipeline run working on the same version and config at the same time trains in a folder
    of its own (suffixed with its flow run id), so two runs never write into one run folder."""
    run = RunFolder(storage.join(params.runs, params.task, f"v{version}-{config_digest(params.config)}"))
    own = f"{run.uri}-{flow_run_id[:8]}"
    if params.force_retrain:
        return own
    if run.is_evaluated():
        return None
    if storage.create_exclusive(run.claim, flow_run_id.encode()) or storage.read_bytes(run.claim).decode() == flow_run_id:
        return run.uri
    return own


@task(**IO_RETRIES, **QUIET)
def promote(params: PipelineParams, run: str) -> PromotionDecision:
    return promotion.promote_run(params.registry, params.task, run, params.promotion_margin,
                                 params.config.evaluation.bootstrap_resamples)


def ingest_stage(params: PipelineParams) -> IngestSummary:
    """Incremental ingest; if another run published meanwhile, once more (it then adds what is still new)."""
    try:
        return ingest_flow(params.ingest)
    except dataset.ConcurrentPublishError:
        get_run_logger().info("another run published a dataset version meanwhile; ingesting again")
        return ingest_flow(params.ingest)


@flow(name="retrain", log_prints=False, **STOPPABLE)
def retrain_flow(params: PipelineParams) -> PipelineResult:
    """Ingest what arrived, train and evaluate an ensemble on the new version, promote it if it is
    really better than the champion. A version and config already evaluated are not retrained."""
    from prefect import runtime

    startup.environment_defaults()  # a deployment's worker starts here, not in the CLI
    logger = get_run_logger()
    ingest = ingest_stage(params)
    version = ingest.version
    if version is None:
        raise ValueError(f"dataset {params.ingest.dataset} is empty: nothing was ingested")
    run = plan_run(params, version, str(runtime.flow_run.id or "local"))
    if run is None:
        logger.info("dataset v%d with this config was trained and evaluated already; nothing to do", version)
        return PipelineResult(dataset_version=version, ingest=ingest)
    training = train_flow(TrainParams(dataset=params.ingest.dataset, run=run, version=version, config=params.config))
    evaluation = evaluate_flow(EvaluateParams(run=run))
    decision = promote(params, run)
    create_markdown_artifact(key=f"promotion-{params.task}", markdown=decision.markdown(),
                             description=f"{params.task}: {'promoted' if decision.promoted else 'kept the champion'}")
    logger.info("promotion: %s (%s)", decision.promoted, decision.reason)
    return PipelineResult(dataset_version=version, ingest=ingest, run=run, training=training, evaluation=evaluation,
                          promotion=decision)
