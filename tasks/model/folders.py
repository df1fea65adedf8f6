"""The layouts of a run folder and of the model folder inside it. These two types are the only place
that spells a file name under them; every other module asks them for a path.

```
RUN_URI/config.json  lineage.json  claimed-by.txt  metrics.json  promotion.json
        checkpoints/<member>/checkpoint_*/state.pt     (Ray Train storage)
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


@dataclass(frozen=True)
class ModelFolder:
    """Everything ``predict`` needs; ``model.json`` is written last and marks the folder complete."""

    uri: str

    @property
    def card(self) -> str:
        return storage.join(self.uri, "model.json")

    @property
    def lineage(self) -> str:
        return storage.join(self.uri, "lineage.json")

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

    @property
    def name(self) -> str:
        return self.uri.rstrip("/").rsplit("/", 1)[-1]

    @property
    def config(self) -> str:
        return storage.join(self.uri, "config.json")

    @property
    def lineage(self) -> str:
        return storage.join(self.uri, "lineage.json")

    @property
    def claim(self) -> str:
        """Holds the id of the pipeline run that claimed this folder (created exclusively)."""
        return storage.join(self.uri, "claimed-by.txt")

    @property
    def metrics(self) -> str:
        """Written by evaluation: its presence means the run is evaluated."""
        return storage.join(self.uri, "metrics.json")

    @property
    def promotion(self) -> str:
        return storage.join(self.uri, "promotion.json")

    @property
    def checkpoints(self) -> str:
        """Ray Train's storage path: one folder per member."""
        return storage.join(self.uri, "checkpoints")

    def checkpoint(self, member: str) -> str:
        return storage.join(self.checkpoints, member)

    @property
    def report(self) -> str:
        return storage.join(self.uri, "report")

    @property
    def report_page(self) -> str:
        return storage.join(self.report, "index.html")

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
