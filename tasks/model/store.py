"""The ensemble model on object storage: ``MODEL_URI/model.json`` (classes, members, preprocessing,
ensemble spec) and ``MODEL_URI/members/<name>.pt`` (state dicts, loaded with ``weights_only=True``).

``model.json`` is written last and atomically: it is the pointer that makes a model complete.
Everything ``predict`` needs is in this folder.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from pydantic import BaseModel, Field

from tasks.core import storage
from tasks.data.samples import PIXEL_MEAN, PIXEL_STD, network_input
from tasks.model.architectures import build_model
from tasks.model.config import MemberPlan
from tasks.model.ensemble import EnsembleSpec, combine
from tasks.model.folders import ModelFolder, member_file, resolve_model
from tasks.model.views import View, views

FORMAT = 1


class Preprocessing(BaseModel):
    """How an input becomes a network input; decoding is the ingestion's own ``tasks.dicom.decode``."""

    image_size: int = Field(description="decoded images are letterboxed to image_size x image_size (volumes: cubed)")
    kind: str = Field("image2d", description="image2d: one image per file; volume3d: one volume per series")
    window: tuple[float, float] | None = Field(None, description="volumes: the dataset's window (None: each series' own)")
    decode: str = "tasks.dicom.decode.decode: modality LUT, VOI LUT/first window, MONOCHROME1 inverted, 8-bit, letterbox"
    pixel_mean: float = PIXEL_MEAN
    pixel_std: float = PIXEL_STD
    tta_hflip: bool = Field(False, description="average each member over the image and its left-right flip")
    tta_zoom: float | None = Field(None, description="average each member over the image and its centre zoom by this "
                                   "factor too (and the zoom's flip, with tta_hflip)")

    @property
    def views(self) -> list[View]:
        """The test-time views a member's prediction averages over."""
        return views(self.tta_hflip, self.tta_zoom)

    @property
    def volumes(self) -> bool:
        return self.kind == "volume3d"

    @property
    def dims(self) -> int:
        return 3 if self.volumes else 2


class Member(BaseModel):
    name: str
    architecture: str
    seed: int
    file: str = Field(description="state dict, relative to the model folder")
    best_val_auc: float | None = None
    epochs_run: int = 0
    boosting_weight: float | None = None


class MemberRecord(MemberPlan):
    """A trained member's record (``MODEL_URI/members/<name>.json``): written last, it marks the member done."""

    best_val_auc: float = Field(description="smoothed validation AUC of the check kept")
    epochs_run: int
    steps_run: int = 0
    precision: str = Field("float32", description="the arithmetic its training steps ran in (train.precision, resolved)")
    planned_steps: int = 0
    ema_decay: float | None = Field(None, description="the decay of the weight average it was judged by and kept (None: none)")
    stopped: str = Field("completed", description="completed; early stopping; shortened (its schedule brought "
                         "forward to end before the deadline); or deadline (the budget ran out before that)")
    boosting_weight: float | None = Field(None, description="boosting: the member's fitted vote weight")
    history: list[dict] = Field(default_factory=list, description="per validation check: losses, AUC, timings")
    resumed_from: int = Field(-1, description="the checkpoint epoch a resumed attempt started from (-1: none)")
    worker_nodes: list[str] = Field(default_factory=list, description="the Ray node of each DDP rank")
    started: float = 0.0
    finished: float = 0.0

    def member(self) -> Member:
        return Member(name=self.name, architecture=self.architecture, seed=self.seed, file=member_file(self.name),
                      best_val_auc=self.best_val_auc, epochs_run=self.epochs_run, boosting_weight=self.boosting_weight)


class ModelCard(BaseModel):
    format: int = FORMAT
    classes: list[str]
    members: list[Member]
    preprocessing: Preprocessing
    ensemble: EnsembleSpec = Field(default_factory=EnsembleSpec)


def save_weights(uri: str, state: dict) -> None:
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in state.items()}, buffer)
    storage.write_bytes_atomic(uri, buffer.getvalue())


def load_weights(uri: str) -> dict:
    return torch.load(io.BytesIO(storage.read_bytes(uri)), weights_only=True, map_location="cpu")


def save_card(model_uri: str, card: ModelCard) -> None:
    storage.write_bytes_atomic(ModelFolder(model_uri).card, card.model_dump_json(indent=2).encode())


def load_card(model_uri: str) -> ModelCard:
    return ModelCard.model_validate_json(storage.read_bytes(ModelFolder(model_uri).card))


def save_record(model_uri: str, record: MemberRecord) -> None:
    """Written last for a member: its presence means the member is done."""
    storage.write_bytes_atomic(ModelFolder(model_uri).record(record.name), record.model_dump_json(indent=2).encode())


def load_record(model_uri: str, name: str) -> MemberRecord:
    return MemberRecord.model_validate_json(storage.read_bytes(ModelFolder(model_uri).record(name)))


@dataclass
class EnsembleModel:
    """Loaded members + card: uint8 images -> member or ensemble class probabilities."""

    card: ModelCard
    networks: list[torch.nn.Module]

    @classmethod
    def load(cls, uri: str) -> EnsembleModel:
        folder = resolve_model(uri)
        card = load_card(folder.uri)
        networks = []
        for member in card.members:
            net = build_model(member.architecture, len(card.classes), card.preprocessing.image_size,
                              card.preprocessing.dims)
            net.load_state_dict(load_weights(folder.file(member.file)))
            networks.append(net.eval())
        return cls(card, networks)

    def _tensor(self, images: np.ndarray) -> torch.Tensor:
        p = self.card.preprocessing
        return network_input(images, p.pixel_mean, p.pixel_std).unsqueeze(1)

    def member_probs(self, batches: Iterable[np.ndarray]) -> np.ndarray:
        """members x images x classes probabilities for batches of uint8 images (each N x H x W),
        averaged over the model card's test-time views."""
        per_view = self.view_probs(batches, self.card.preprocessing.views)
        return np.mean(list(per_view.values()), axis=0)

    @torch.no_grad()
    def view_probs(self, batches: Iterable[np.ndarray], views: list[View]) -> dict[View, np.ndarray]:
        """members x images x classes probabilities of each view, from one pass over the batches."""
        parts = {view: [np.zeros((len(self.networks), 0, len(self.card.classes)))] for view in views}
        for images in batches:
            x = self._tensor(images)
            for view in views:
                seen = view(x)
                parts[view].append(np.stack([torch.softmax(net(seen), dim=1).numpy() for net in self.networks]).astype(np.float64))
        return {view: np.concatenate(p, axis=1) for view, p in parts.items()}

    def predict_proba(self, batches: Iterable[np.ndarray]) -> np.ndarray:
        """The ensemble's images x classes probabilities, for batches of uint8 images (each N x H x W)."""
        return combine(self.member_probs(batches), self.card.ensemble)
