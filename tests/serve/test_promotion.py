"""Champion/challenger: the paired bootstrap gate, exclusive pointers under concurrency, rollback."""

from __future__ import annotations

import threading

import numpy as np
import torch
from torch import nn

from tasks.core import provenance, storage
from tasks.data.samples import InMemory
from tasks.model.store import EnsembleModel, Member, ModelCard, Preprocessing
from tasks.serve import model_registry as registry
from tasks.serve.model_registry import Pointer

RNG = np.random.default_rng(0)
LABELS = RNG.integers(0, 2, 300)
IMAGES = (RNG.random((300, 8, 8)) * 100 + 60 * LABELS[:, None, None]).astype(np.uint8)  # brighter = class 1
PATIENTS = np.repeat(np.arange(150), 2)
VAL = InMemory(IMAGES, LABELS, PATIENTS)


class Brightness(nn.Module):
    """Logit of class 1 = scaled mean brightness (a good model), or random (a useless one)."""

    def __init__(self, useful: bool) -> None:
        super().__init__()
        self.useful = useful

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.mean(dim=(1, 2, 3)) * 4 if self.useful else torch.randn(len(x), generator=torch.Generator().manual_seed(1))
        return torch.stack([-z, z], dim=1)


def model(useful: bool) -> EnsembleModel:
    card = ModelCard(classes=["absent", "present"], preprocessing=Preprocessing(image_size=8),
                     members=[Member(name="m", architecture="x", seed=0, file="m.pt")])
    card.ensemble.positive = 1
    return EnsembleModel(card, [Brightness(useful)])


def test_gate_promotes_a_clearly_better_model_and_not_an_equal_one():
    better = registry.paired_auc_gate(model(True), model(False), VAL, margin=0.0, resamples=300)
    assert better.promote and better.delta_ci95[0] > 0 and better.challenger_auc > 0.9
    same = registry.paired_auc_gate(model(True), model(True), VAL, margin=0.0, resamples=300)
    assert not same.promote and same.delta_auc == 0
    worse = registry.paired_auc_gate(model(False), model(True), VAL, margin=0.0, resamples=300)
    assert not worse.promote and worse.delta_ci95[1] < 0


def test_gate_margin_is_applied():
    strict = registry.paired_auc_gate(model(True), model(False), VAL, margin=0.9, resamples=300)
    assert not strict.promote and "margin 0.9" in strict.reason


def _pointer(model_uri: str, current: Pointer | None) -> Pointer:
    return Pointer(seq=0, task="chest", model=model_uri, action="promote", decided_at=provenance.utc_now(),
                   replaces=current.seq if current else None)


def test_concurrent_promotions_never_overwrite_a_pointer(tmp_path):
    uri = str(tmp_path / "registry")
    barrier = threading.Barrier(8)

    def promote(i: int) -> None:
        barrier.wait()
        registry.publish(uri, "chest", lambda current: _pointer(f"model-{i}", current))

    threads = [threading.Thread(target=promote, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    entries = registry.history(uri, "chest")
    assert [p.seq for p in entries] == list(range(8))
    assert sorted(p.model for p in entries) == sorted(f"model-{i}" for i in range(8))  # every decision kept, none lost
    assert [p.replaces for p in entries] == [None, *range(7)]  # each replaced the champion it saw


def test_exclusive_create_on_s3(s3_endpoint):
    fs = storage.filesystem("s3://")
    if not fs.exists("medflow-registry"):
        fs.mkdir("medflow-registry")
    uri = "s3://medflow-registry/chest/pointers/00000000.json"
    assert storage.create_exclusive(uri, b"first")
    assert not storage.create_exclusive(uri, b"second")
    assert storage.read_bytes(uri) == b"first"


def test_rollback_follows_the_chain_back(tmp_path):
    from tasks.serve import promotion

    uri = str(tmp_path / "registry")
    for name in ("a", "b", "c"):
        registry.publish(uri, "chest", lambda current, name=name: _pointer(name, current))
    assert promotion.rollback(uri, "chest").model == "b"
    assert promotion.rollback(uri, "chest").model == "a"
    assert registry.resolve_model("champion:chest", uri) == "a"
    try:
        promotion.rollback(uri, "chest")
    except registry.RegistryError as exc:
        assert "no earlier champion" in str(exc)
    else:
        raise AssertionError("rolled back past the first champion")
