"""Model registry: one champion pointer per task in object storage, and the promotion gate.

``REGISTRY/<task>/pointers/<seq>.json`` is an append-only log; the champion is the newest entry.
A new entry is created only if its sequence number is still free (exclusive create), so two runs
promoting at once never overwrite each other: the loser re-reads the champion and decides again.

The gate: challenger and champion predict the *same* validation images (the challenger's dataset
version); a paired patient-level bootstrap gives the 95% CI of the AUC difference, and the
challenger is promoted only when the CI's lower bound is above ``margin``.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
from pydantic import BaseModel

from tasks.core import metrics, storage
from tasks.data.samples import Samples
from tasks.model.store import EnsembleModel

REGISTRY_ENV = "MEDFLOW_REGISTRY"
CHAMPION_PREFIX = "champion:"
ATTEMPTS = 20


class Pointer(BaseModel):
    seq: int
    task: str
    model: str
    action: str  # "promote", "manual", "rollback"
    decided_at: str
    replaces: int | None = None  # seq of the pointer whose model this one displaced (rollback follows it back)
    evidence: dict | None = None


class RegistryError(ValueError):
    """A registry request that cannot be met (no champion, nothing to roll back to, ...)."""


def default_registry() -> str:
    return storage.normalize(os.environ.get(REGISTRY_ENV, "medflow-registry"))


def _pointers(registry: str, task: str) -> str:
    return storage.join(registry, task, "pointers")


def history(registry: str, task: str) -> list[Pointer]:
    """Every pointer of ``task``, oldest first."""
    folder = _pointers(registry, task)
    if not storage.exists(folder):
        return []
    names = sorted(rel for rel, *_ in storage.list_files(folder) if rel.endswith(".json") and "/" not in rel)
    return [Pointer.model_validate_json(storage.read_bytes(storage.join(folder, name))) for name in names]


def champion(registry: str, task: str) -> Pointer | None:
    entries = history(registry, task)
    return entries[-1] if entries else None


def publish(registry: str, task: str, decide: Callable[[Pointer | None], Pointer | None]) -> Pointer | None:
    """Append the pointer ``decide(current champion)`` returns (None: no change), retrying the
    decision whenever another writer took the next sequence number first. Returns the champion after."""
    for _ in range(ATTEMPTS):
        current = champion(registry, task)
        new = decide(current)
        if new is None:
            return current
        new.seq = current.seq + 1 if current else 0
        uri = storage.join(_pointers(registry, task), f"{new.seq:08d}.json")
        if storage.create_exclusive(uri, new.model_dump_json(indent=2).encode()):
            return new
    raise RuntimeError(f"registry {registry}/{task}: could not publish after {ATTEMPTS} concurrent attempts")


def resolve_model(uri: str, registry: str | None = None) -> str:
    """A model URI, or ``champion:<task>`` resolved through the registry."""
    if not uri.startswith(CHAMPION_PREFIX):
        return uri
    task = uri.removeprefix(CHAMPION_PREFIX)
    current = champion(registry or default_registry(), task)
    if current is None:
        raise RegistryError(f"no champion for task {task!r} in registry {registry or default_registry()}")
    return current.model


class Evidence(BaseModel):
    """Why a challenger is promoted or not; the gate's numbers when the gate ran."""

    promote: bool
    reason: str
    challenger_auc: float | None = None
    champion_auc: float | None = None
    delta_auc: float | None = None
    delta_ci95: list[float] | None = None
    margin: float | None = None
    resamples: int | None = None
    images: int | None = None
    patients: int | None = None


def paired_auc_gate(challenger: EnsembleModel, incumbent: EnsembleModel, val: Samples, margin: float,
                    resamples: int = 1000, seed: int = 0) -> Evidence:
    """Evidence for promotion: both models' AUC on the same images (``val``, with patient keys) and
    the paired bootstrap 95% CI of the difference; ``promote`` is whether the CI's lower bound is
    above ``margin``."""
    if challenger.card.classes != incumbent.card.classes:
        return Evidence(promote=False, reason=f"classes differ: {challenger.card.classes} vs {incumbent.card.classes}")
    positive, labels, patients = challenger.card.ensemble.positive, val.labels, val.patients
    new, old = challenger.predict_proba(val.batches()), incumbent.predict_proba(val.batches())

    def auc(probs: np.ndarray) -> float:
        return metrics.auc(probs, labels, positive)

    weights = metrics.patient_weights(patients, resamples, seed)
    deltas = metrics.resampled_auc(new, labels, weights, positive) - metrics.resampled_auc(old, labels, weights, positive)
    deltas = deltas[~np.isnan(deltas)]  # a resample without one of the classes has no AUC
    low, high = (float(np.percentile(deltas, 2.5)), float(np.percentile(deltas, 97.5))) if len(deltas) else (float("nan"),) * 2
    return Evidence(
        challenger_auc=auc(new), champion_auc=auc(old), delta_auc=auc(new) - auc(old), delta_ci95=[low, high],
        margin=margin, resamples=len(deltas), images=len(labels), patients=len(set(patients)), promote=bool(low > margin),
        reason=f"lower 95% bound of the AUC gain {low:.4f} {'>' if low > margin else '<='} margin {margin}",
    )
