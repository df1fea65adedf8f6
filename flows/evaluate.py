"""evaluate_flow: a trained run -> the ensemble fitted on validation, metrics with CIs on val and
test, the report in RUN_URI/report/, and the headline table as Prefect artifacts."""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from pydantic import BaseModel, Field

from flows.cancellation import STOPPABLE
from flows.retry import IO_RETRIES, QUIET
from flows.uris import Uri
from tasks.core import storage
from tasks.evaluate import report
from tasks.evaluate.evaluation import ENSEMBLE, Evaluation, EvaluationResult, evaluate
from tasks.model import runs
from tasks.model.folders import RunFolder


class EvaluateParams(BaseModel):
    run: Uri = Field(description="run folder written by `medflow train` (path or s3://)")


@task(**IO_RETRIES, **QUIET)
def evaluate_run(params: EvaluateParams) -> Evaluation:
    return evaluate(runs.load(params.run))


def publish_artifacts(doc: dict, report_uri: str, plots: dict[str, bytes]) -> None:
    """The key table, the full Markdown summary, the plots and a link to the HTML report, in the Prefect UI."""
    test = doc["results"][ENSEMBLE]["test"]
    create_table_artifact(key="evaluation-test", description="ensemble and members on the test split, 95% CIs",
                          table=[dict(zip(["model", *report.HEADLINE], row, strict=True))
                                 for row in report.table_rows(doc["results"], "test")])
    create_markdown_artifact(key="evaluation-report", markdown=report.markdown(doc, report_uri),
                             description=f"test AUC {report.fmt(test['point']['auc'], test['ci'].get('auc'))}")
    create_markdown_artifact(key="evaluation-plots", markdown=report.plots_markdown(plots),
                             description="test split: ROC with 95% band, confusion matrix, reliability; training curves")
    link = report_uri if storage.is_remote(report_uri) else f"file://{report_uri}"
    create_link_artifact(key="evaluation-report-link", link=link, link_text="HTML report")


@flow(name="evaluate", log_prints=False, **STOPPABLE)
def evaluate_flow(params: EvaluateParams) -> EvaluationResult:
    """Fit the ensemble on validation, score every model on val and test, write the report."""
    evaluation = evaluate_run(params)
    publish_artifacts(evaluation.doc, evaluation.report, evaluation.plots)
    result = evaluation.result(RunFolder(params.run).metrics)
    get_run_logger().info("ensemble (%s) test AUC %.3f, accuracy %.3f at the operating point", result.ensemble.combiner,
                          result.test.point["auc"], result.test.point["accuracy_at_op"])
    return result
