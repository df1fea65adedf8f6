"""predict_flow: a model + a DICOM source -> PRED.csv (path, predicted, p_<class>..., reason)."""

from __future__ import annotations

import sys

from prefect import flow, get_run_logger, task
from prefect.utilities.annotations import quote
from pydantic import BaseModel, Field
from tqdm import tqdm

from flows.cancellation import STOPPABLE
from flows.retry import IO_RETRIES, QUIET
from flows.uris import Uri
from tasks.core import storage
from tasks.model.store import EnsembleModel
from tasks.serve.predict import Predictions, predict


class PredictParams(BaseModel):
    model: Uri = Field(description="model folder, or a run folder holding model/ (path or s3://)")
    source: Uri = Field(description="folder or s3:// prefix of DICOM files, or one file")
    out: Uri = Field(description="predictions CSV (path or s3://); may hold source paths, so keep it with the source")


class PredictionSummary(BaseModel):
    """What ``medflow predict`` did: where the CSV went, files predicted per class and refused per reason."""

    out: str
    predicted: dict[str, int]
    refused: dict[str, int]


@task(**IO_RETRIES, **QUIET)
def load_model(params: PredictParams) -> EnsembleModel:
    return EnsembleModel.load(params.model)


@task(**QUIET)
def predict_files(params: PredictParams, model: EnsembleModel) -> Predictions:
    with tqdm(unit="file", desc="predicting", disable=not sys.stderr.isatty()) as bar:
        return predict(model, params.source, progress=bar.update)


@task(**IO_RETRIES, **QUIET)
def write_predictions(params: PredictParams, text: str) -> None:
    storage.write_bytes_atomic(params.out, text.encode())


@flow(name="predict", log_prints=False, **STOPPABLE)
def predict_flow(params: PredictParams) -> PredictionSummary:
    """Decode every file with the ingestion code, predict with the ensemble, write one CSV row per file."""
    model = load_model(params)
    predictions = predict_files(params, quote(model))
    write_predictions(params, quote(predictions.csv))
    get_run_logger().info("predicted %s; refused %s", predictions.predicted, predictions.refused)
    return PredictionSummary(out=params.out, predicted=predictions.predicted, refused=predictions.refused)
