"""The layouts of a run folder and of the model folder inside it. These two types are the only place
that spells a file name under them; every other module asks them for a path.

```
RUN_URI/config.json  lineage.json  plan.json  claimed-by.txt  metrics.json  promotion.json
        checkpoints/<member>/checkpoint_*/state.pt     (Ray Train storage)
        boosting/<member>.json                          (boosting: vote weight, next member's row weights)
        pretrained/<architecture>.pt  .json             (self-supervised pretraining: weights, losses)
        report/index.html  report/<plot>.png
        model/model.json  model/lineage.json  model/members/<member>.pt  model/members/<member>.json
```
"""

from __future__ import annotations

from dataclasses import dataclass

from tasks.core import storage


def member_file(name: str) -> str:
    """A member's state dict, relative to the model folder (as the model card records it)."""
    return f"members/{name}.pt"


def member_record_file(name: str) -> str:
    """A member's training record, relative to the model folder."""
    return f"members/{name}.json"


class _Path:
    """A fixed path below a folder type; read on an instance, it is that path's URI."""

    def __init__(self, *parts: str) -> None:
        self.parts = parts

    def __get__(self, folder, owner=None):
        return self if folder is None else storage.join(folder.uri, *self.parts)


@dataclass(frozen=True)
class ModelFolder:
    """Everything ``predict`` needs; ``model.json`` is written last and marks the folder complete."""

    uri: str
    card = _Path("model.json")
    lineage = _Path("lineage.json")

    def weights(self, name: str) -> str:
        return storage.join(self.uri, member_file(name))

    def record(self, name: str) -> str:
        return storage.join(self.uri, member_record_file(name))

    def file(self, relative: str) -> str:
        """A file the model card names relative to the folder."""
        return storage.join(self.uri, relative)

    def exists(self) -> bool:
        return storage.exists(self.card)


@dataclass(frozen=True)
class RunFolder:
    """A training run: tied to one dataset version and one config (see ``tasks.model.runs``)."""

    uri: str
    config = _Path("config.json")
    lineage = _Path("lineage.json")
    plan = _Path("plan.json")  # the ensemble plan: members, schedules, the speeds that sized them
    claim = _Path("claimed-by.txt")  # the id of the pipeline run that claimed the folder (created exclusively)
    metrics = _Path("metrics.json")  # written by evaluation, last: the run is evaluated once it exists
    promotion = _Path("promotion.json")
    checkpoints = _Path("checkpoints")  # Ray Train's storage path: one folder per member
    report = _Path("report")
    report_page = _Path("report", "index.html")

    @property
    def name(self) -> str:
        return self.uri.rstrip("/").rsplit("/", 1)[-1]

    def checkpoint(self, member: str) -> str:
        return storage.join(self.checkpoints, member)

    def pretrained(self, architecture: str) -> str:
        return storage.join(self.uri, "pretrained", f"{architecture}.pt")

    def pretrained_record(self, architecture: str) -> str:
        return storage.join(self.uri, "pretrained", f"{architecture}.json")

    def boosting(self, member: str) -> str:
        return storage.join(self.uri, "boosting", f"{member}.json")

    def report_file(self, name: str) -> str:
        return storage.join(self.report, name)

    @property
    def model(self) -> ModelFolder:
        return ModelFolder(storage.join(self.uri, "model"))

    def is_evaluated(self) -> bool:
        return storage.exists(self.metrics)


def resolve_model(uri: str) -> ModelFolder:
    """A model folder, or a run folder holding one."""
    uri = storage.normalize(uri)
    for folder in (ModelFolder(uri), RunFolder(uri).model):
        if folder.exists():
            return folder
    raise FileNotFoundError(f"no model at {uri}: expected model.json there or in its model/ folder")
