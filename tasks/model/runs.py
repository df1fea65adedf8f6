"""A training run's folder: ``RUN_URI/config.json``, ``lineage.json``, ``checkpoints/``, ``model/``,
``metrics.json`` and ``report/``. A run is tied to one dataset version and one config: rerunning
with the same run URI resumes it; a different version or config needs a new run URI."""

from __future__ import annotations

from pydantic import BaseModel

from tasks.core import provenance, storage
from tasks.data import dataset
from tasks.model import store as model_store
from tasks.model.config import EnsembleConfig
from tasks.model.store import MemberRecord, ModelCard, Preprocessing

CONFIG_FILE, LINEAGE_FILE, METRICS_FILE = "config.json", "lineage.json", "metrics.json"
CLAIM_FILE = "claimed-by.txt"  # the pipeline run that claimed this run folder


class RunMismatchError(ValueError):
    """The run URI already holds a run of another dataset version or config."""


class RunInfo(BaseModel):
    run: str
    dataset: str
    version: int
    classes: list[str]
    image_size: int


def prepare(run_uri: str, dataset_uri: str, version: int | None, config: EnsembleConfig, flow_run_id: str | None) -> RunInfo:
    """Pin the dataset version and record config + lineage, or check them against an earlier attempt."""
    lineage_uri = storage.join(run_uri, LINEAGE_FILE)
    if storage.exists(lineage_uri):
        earlier = storage.read_json(lineage_uri)
        same_version = version is None or version == earlier["dataset_version"]
        if earlier["dataset"] != dataset_uri or not same_version or earlier["config"] != config.model_dump(mode="json"):
            raise RunMismatchError(f"run {run_uri} was started with another dataset, dataset version or config; "
                                   "rerun with the same settings to resume it, or use a new --run")
        return RunInfo(run=run_uri, dataset=dataset_uri, version=earlier["dataset_version"], classes=earlier["classes"],
                       image_size=earlier["image_size"])
    version = dataset.latest_version(dataset_uri) if version is None else version
    if version is None:
        raise dataset.DatasetNotFoundError(f"no dataset at {dataset_uri}; run `medflow ingest` first")
    table = dataset.read_version(dataset_uri, version, columns=["label", "split", "height"])
    splits = set(table.column("split").to_pylist())
    missing = {"train", "val"} - splits
    if missing:
        raise ValueError(f"dataset {dataset_uri} v{version} has no {sorted(missing)} split rows to train on")
    classes = sorted(set(table.column("label").to_pylist()))
    if len(classes) < 2:
        raise ValueError(f"dataset {dataset_uri} v{version} has one class only ({classes}); need at least two")
    info = RunInfo(run=run_uri, dataset=dataset_uri, version=version, classes=classes,
                   image_size=int(table.column("height")[0].as_py()))
    lineage = {
        "dataset": dataset_uri, "dataset_version": version, "classes": classes, "image_size": info.image_size,
        "config": config.model_dump(mode="json"), "seeds": {p.name: p.seed for p in config.plans()},
        "code_version": provenance.code_version(), "packages": provenance.package_versions(),
        "prefect_flow_run_id": flow_run_id, "started": provenance.utc_now(),
    }
    storage.write_json(storage.join(run_uri, CONFIG_FILE), config.model_dump(mode="json"))
    storage.write_json(lineage_uri, lineage)
    return info


def load(run_uri: str) -> tuple[RunInfo, EnsembleConfig, dict]:
    """A trained run's info, config and lineage."""
    lineage_uri = storage.join(run_uri, LINEAGE_FILE)
    if not storage.exists(lineage_uri):
        raise FileNotFoundError(f"no run at {run_uri}: {LINEAGE_FILE} is missing (run `medflow train` first)")
    lineage = storage.read_json(lineage_uri)
    info = RunInfo(run=run_uri, dataset=lineage["dataset"], version=lineage["dataset_version"],
                   classes=lineage["classes"], image_size=lineage["image_size"])
    return info, EnsembleConfig.model_validate(lineage["config"]), lineage


def publish_model(info: RunInfo, config: EnsembleConfig, trained: list[MemberRecord]) -> ModelCard:
    """Write ``model/model.json`` for the trained members (a plain mean ensemble until evaluated)."""
    members = [record.member() for record in trained]
    card = ModelCard(classes=info.classes, members=members,
                     preprocessing=Preprocessing(image_size=info.image_size, tta_hflip=config.evaluation.tta_hflip))
    model_store.save_card(storage.join(info.run, "model"), card)
    lineage_uri = storage.join(info.run, LINEAGE_FILE)
    lineage = storage.read_json(lineage_uri)
    lineage["finished"] = provenance.utc_now()
    storage.write_json(storage.join(info.run, "model", LINEAGE_FILE), lineage)
    return card
