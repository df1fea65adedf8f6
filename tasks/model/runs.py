"""A training run (layout: ``tasks.model.folders.RunFolder``): tied to one dataset version and one
config. Rerunning with the same run URI resumes it; a different version or config needs a new run URI."""

from __future__ import annotations

from collections import Counter

from pydantic import BaseModel, Field

from tasks.core import provenance, storage
from tasks.data import dataset
from tasks.model import store as model_store
from tasks.model.config import EnsembleConfig
from tasks.model.folders import RunFolder
from tasks.model.store import MemberRecord, ModelCard, Preprocessing


class RunMismatchError(ValueError):
    """The run URI already holds a run of another dataset version or config."""


class RunInfo(BaseModel):
    """What a run is about: where it is, its dataset version, classes and image size."""

    run: str
    dataset: str
    version: int
    classes: list[str]
    image_size: int
    kind: str = "image2d"
    window: tuple[float, float] | None = None
    split_sizes: dict[str, int] = Field(default_factory=dict, description="rows per split of the pinned version")

    @property
    def dims(self) -> int:
        return 3 if self.kind == "volume3d" else 2

    @property
    def folder(self) -> RunFolder:
        return RunFolder(self.run)


class TrainedRun(BaseModel):
    """A run read back: its info, config and lineage record."""

    info: RunInfo
    config: EnsembleConfig
    lineage: dict


def prepare(run_uri: str, dataset_uri: str, version: int | None, config: EnsembleConfig, flow_run_id: str | None) -> RunInfo:
    """Pin the dataset version and record config + lineage, or check them against an earlier attempt."""
    folder = RunFolder(run_uri)
    if storage.exists(folder.lineage):
        earlier = storage.read_json(folder.lineage)
        same_version = version is None or version == earlier["dataset_version"]
        if earlier["dataset"] != dataset_uri or not same_version or earlier["config"] != config.model_dump(mode="json"):
            raise RunMismatchError(f"run {run_uri} was started with another dataset, dataset version or config; "
                                   "rerun with the same settings to resume it, or use a new --run")
        return _info(run_uri, earlier)
    version = dataset.latest_version(dataset_uri) if version is None else version
    if version is None:
        raise dataset.DatasetNotFoundError(f"no dataset at {dataset_uri}; run `medflow ingest` first")
    table = dataset.read_version(dataset_uri, version, columns=["label", "split"])
    splits = set(table.column("split").to_pylist())
    missing = {"train", "val"} - splits
    if missing:
        raise ValueError(f"dataset {dataset_uri} v{version} has no {sorted(missing)} split rows to train on")
    classes = sorted(set(table.column("label").to_pylist()))
    split_sizes = dict(Counter(table.column("split").to_pylist()))
    if len(classes) < 2:
        raise ValueError(f"dataset {dataset_uri} v{version} has one class only ({classes}); need at least two")
    geometry = dataset.geometry(dataset_uri, version)
    lineage = {
        "dataset": dataset_uri, "dataset_version": version, "classes": classes,
        "image_size": geometry.image_size, "kind": geometry.kind, "window": geometry.window,  # the dataset's contract
        "split_sizes": split_sizes, "config": config.model_dump(mode="json"),
        "code_version": provenance.code_version(), "packages": provenance.package_versions(),
        "prefect_flow_run_id": flow_run_id, "started": provenance.utc_now(),
    }
    storage.write_json(folder.config, config.model_dump(mode="json"))
    storage.write_json(folder.lineage, lineage)
    return _info(run_uri, lineage)


def _info(run_uri: str, lineage: dict) -> RunInfo:
    return RunInfo(run=run_uri, dataset=lineage["dataset"], version=lineage["dataset_version"],
                   classes=lineage["classes"], image_size=lineage["image_size"], kind=lineage.get("kind", "image2d"),
                   window=lineage.get("window"),
                   split_sizes=lineage.get("split_sizes", {}))


def load(run_uri: str) -> TrainedRun:
    """A trained run's info, config and lineage."""
    folder = RunFolder(run_uri)
    if not storage.exists(folder.lineage):
        raise FileNotFoundError(f"no run at {run_uri}: lineage.json is missing (run `medflow train` first)")
    lineage = storage.read_json(folder.lineage)
    return TrainedRun(info=_info(run_uri, lineage), config=EnsembleConfig.model_validate(lineage["config"]), lineage=lineage)


def publish_model(info: RunInfo, config: EnsembleConfig, trained: list[MemberRecord]) -> ModelCard:
    """Write ``model/model.json`` for the trained members (a plain mean ensemble until evaluated);
    the model's lineage carries the run's plan (members, seeds, schedules)."""
    members = [record.member() for record in trained]
    evaluation = config.evaluation
    card = ModelCard(classes=info.classes, members=members,
                     preprocessing=Preprocessing(image_size=info.image_size, kind=info.kind, window=info.window,
                                                 tta_hflip=evaluation.tta_hflip is True,
                                                 tta_zoom=evaluation.tta_zoom_factor if evaluation.tta_zoom is True else None))
    model = info.folder.model
    lineage = storage.read_json(info.folder.lineage)
    lineage["finished"] = provenance.utc_now()
    if storage.exists(info.folder.plan):
        lineage["plan"] = storage.read_json(info.folder.plan)
    lineage["seeds"] = {record.name: record.seed for record in trained}
    storage.write_json(model.lineage, lineage)
    model_store.save_card(model.uri, card)  # last: the card makes the model folder complete
    return card
