"""train_flow: a dataset version -> an ensemble of members trained on Ray Train -> RUN_URI/model/."""

from __future__ import annotations

from prefect import flow, get_run_logger, runtime, task
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel, Field

from flows.cancellation import STOPPABLE
from flows.retry import IO_RETRIES, QUIET
from flows.uris import Uri
from tasks.model import runs
from tasks.model.config import EnsembleConfig
from tasks.model.runs import RunInfo
from tasks.model.store import MemberRecord
from tasks.train.members import TrainSummary, train_members


class TrainParams(BaseModel):
    """What to train on, where the run goes, and how (the run's config)."""

    dataset: Uri = Field(description="dataset location (path or s3://)")
    run: Uri = Field(description="run folder (path or s3://): checkpoints, model, metrics, report")
    version: int | None = Field(None, description="dataset version; default the latest (a resumed run keeps its own)")
    config: EnsembleConfig = Field(default_factory=EnsembleConfig)


@task(**IO_RETRIES, **QUIET)
def prepare_run(params: TrainParams) -> RunInfo:
    return runs.prepare(params.run, params.dataset, params.version, params.config, str(runtime.flow_run.id or ""))


@task(**QUIET)
def train_on_ray(params: TrainParams, info: RunInfo) -> TrainSummary:
    logger = get_run_logger()

    def done(record: MemberRecord) -> None:
        logger.info("%s (%s) done: smoothed validation AUC %.3f, %d of %d steps (%s)", record.name, record.architecture,
                    record.best_val_auc, record.steps_run, record.planned_steps, record.stopped)

    return train_members(info, params.config, on_done=done)


@task(**IO_RETRIES, **QUIET)
def publish_model(params: TrainParams, info: RunInfo, trained: list[MemberRecord]) -> None:
    runs.publish_model(info, params.config, trained)


@flow(name="train", log_prints=False, **STOPPABLE)
def train_flow(params: TrainParams) -> TrainSummary:
    """Pin the dataset version, plan and train the members (concurrently where Ray has room), publish the model."""
    info = prepare_run(params)
    get_run_logger().info("training on dataset v%d, classes %s", info.version, info.classes)
    summary = train_on_ray(params, info)
    get_run_logger().info("plan: %s", summary.plan.summary())
    create_markdown_artifact(key="train-summary", markdown=summary.markdown(), description="medflow train")
    publish_model(params, info, summary.members)
    return summary
