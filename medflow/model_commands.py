"""The model commands: train, evaluate, predict, the whole pipeline, serving, promotion, the demo."""

from __future__ import annotations

import argparse
import os
import secrets

from flows import startup
from flows.evaluate import EvaluateParams, evaluate_flow
from flows.ingest import IngestParams
from flows.pipeline import PipelineParams, PipelineResult, retrain_flow
from flows.predict import PredictParams, predict_flow
from flows.train import TrainParams, train_flow
from medflow.commands import preflight
from medflow.summaries import print_decision, print_evaluation, print_ingest, print_predictions, print_training
from medflow.synthetic import write_corpus
from medflow.synthetic_series import write_volume_corpus
from tasks.core import storage
from tasks.data import dataset
from tasks.ingest import deid
from tasks.model.config import EnsembleConfig, load_config
from tasks.model.folders import RunFolder, resolve_model
from tasks.serve import model_registry as registry
from tasks.serve import promotion
from tasks.train.members import check_room


def train(args: argparse.Namespace) -> int:
    config = load_config(args.config, {"members": args.members, "workers": args.workers, "train.epochs": args.epochs,
                                       "train.steps": args.steps, "train.budget_minutes": args.budget_minutes})
    params = TrainParams(dataset=args.dataset, run=args.run, version=args.version, config=config)
    if dataset.latest_version(params.dataset) is None:
        raise ValueError(f"no dataset at {params.dataset}; run `medflow ingest` first")
    startup.start_services()
    check_room(config)  # before the flow: a plain error, not a failed run
    print_training(train_flow(params))
    return 0


def evaluate(args: argparse.Namespace) -> int:
    params = EvaluateParams(run=args.run)
    if not RunFolder(params.run).model.exists():
        raise FileNotFoundError(f"no trained model in {params.run}/model (run `medflow train` first)")
    startup.start_services()
    print_evaluation(evaluate_flow(params))
    return 0


def predict(args: argparse.Namespace) -> int:
    params = PredictParams(model=registry.resolve_model(args.model, args.registry), source=args.source, out=args.out)
    if not storage.exists(params.source):
        raise ValueError(f"source not found: {params.source}")
    resolve_model(params.model)  # a missing model is a one-line error before any flow starts
    startup.start_services()
    print_predictions(predict_flow(params))
    return 0


def load_pipeline_params(path: str, **overrides) -> PipelineParams:
    import yaml

    data = yaml.safe_load(storage.read_bytes(storage.normalize(path)))
    if not isinstance(data, dict):
        raise ValueError(f"pipeline config {path} must be a YAML mapping")
    return PipelineParams.model_validate({**data, **{k: v for k, v in overrides.items() if v}})


def run_pipeline(args: argparse.Namespace) -> int:
    params = load_pipeline_params(args.config, force_retrain=args.force_retrain)
    preflight(params.ingest)
    startup.start_services()
    check_room(params.config)
    print_pipeline(retrain_flow(params), params)
    return 0


def print_pipeline(result: PipelineResult, params: PipelineParams) -> None:
    print_ingest(result.ingest, params.ingest.dataset, params.ingest.rejects)
    if result.run is None:
        print("  this dataset version and config were trained and evaluated already: nothing retrained")
        return
    print_training(result.training)
    print_evaluation(result.evaluation)
    print_decision(result.promotion)


def serve(args: argparse.Namespace) -> int:
    from prefect import serve as prefect_serve
    from prefect.client.schemas.schedules import CronSchedule

    params = load_pipeline_params(args.config)
    deployment = retrain_flow.to_deployment(name="nightly-retrain", parameters={"params": params.model_dump(mode="json")},
                                            schedule=CronSchedule(cron=args.cron, timezone=args.timezone))
    print(f"serving nightly-retrain ({args.cron}, {args.timezone}); Ctrl-C stops")
    prefect_serve(deployment)
    return 0


def promote(args: argparse.Namespace) -> int:
    registry_uri = storage.normalize(args.registry) if args.registry else registry.default_registry()
    run = storage.normalize(args.run)
    if not RunFolder(run).is_evaluated():
        raise FileNotFoundError(f"{run} has not been evaluated (run `medflow evaluate --run {run}` first)")
    print_decision(promotion.promote_run(registry_uri, args.task, run, args.margin, force=args.force))
    return 0


def rollback(args: argparse.Namespace) -> int:
    registry_uri = storage.normalize(args.registry) if args.registry else registry.default_registry()
    pointer = promotion.rollback(registry_uri, args.task)
    print(f"champion of {args.task!r} is {pointer.model} again (rolled back from {pointer.evidence['rolled_back_from']})")
    return 0


def demo(args: argparse.Namespace) -> int:
    """A synthetic corpus, then the retraining pipeline, the same flow the nightly deployment runs."""
    out = os.path.abspath(args.out or ("medflow-demo-volumes" if args.volumes else "medflow-demo"))
    source = os.path.join(out, "source")
    if not os.environ.get(deid.KEY_ENV):
        key_file = os.path.join(out, "pseudonym.key")
        os.makedirs(out, exist_ok=True)
        if not os.path.exists(key_file):
            storage.write_bytes_atomic(key_file, secrets.token_urlsafe(32).encode())
            os.chmod(key_file, 0o600)
        os.environ[deid.KEY_ENV] = open(key_file).read().strip()
        print(f"demo: no {deid.KEY_ENV} set; using a local demo key stored in {key_file}")
    if not os.path.exists(os.path.join(source, "labels.csv")):
        print(f"demo: writing a synthetic DICOM {'CT series ' if args.volumes else ''}corpus to {source}")
        if args.volumes:
            write_volume_corpus(source, n_patients=args.patients, series_per_patient=min(args.images_per_patient, 2),
                                size=48, depth=24, contrast=0.15)
        else:
            write_corpus(source, n_patients=args.patients, images_per_patient=args.images_per_patient, contrast=0.12)
    if args.volumes:  # small volumes; the volumes' default networks (resnet18_slices, seed_cnn_strided)
        size, members = 24, {"members": 2, "train": {"epochs": args.epochs or 15}}
    else:
        size, members = 64, {"members": 3, "architectures": ["seed_cnn", "resnet18"], "train": {"epochs": args.epochs or 10}}
    params = PipelineParams(
        ingest=IngestParams(source=source, labels=os.path.join(source, "labels.csv"), image_size=size, volumes=args.volumes,
                            dataset=os.path.join(out, "dataset"), rejects=os.path.join(out, "rejects.csv")),
        runs=os.path.join(out, "runs"), registry=os.path.join(out, "registry"), task="demo",
        config=EnsembleConfig.model_validate({**members, "evaluation": {"bootstrap_resamples": 1000}}))
    print(f"demo: library logs (Ray, Prefect's server) go to {startup.start_services(os.path.join(out, 'medflow.log'))}")
    print_pipeline(retrain_flow(params), params)
    return 0


