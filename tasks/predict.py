"""Batch prediction: every file below SOURCE decoded with the ingestion's own code, then the ensemble.

Each file gets one CSV row ``path, predicted, p_<class>..., reason``: probabilities when it decoded,
an empty prediction and a refusal reason when it did not. One bad file never stops the run.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Callable, Iterator

import numpy as np

from tasks import metrics, storage
from tasks.dicom import Limits, Rejection, decode
from tasks.ingest import read_source
from tasks.labels import PathGuard
from tasks.model_store import EnsembleModel

BATCH = 64


def decode_file(source: str, rel: str, size: int, image_size: int, guard: PathGuard, limits: Limits) -> np.ndarray:
    """One file -> its display image, exactly as ingestion decodes it; raises ``Rejection``."""
    why = guard.reason(rel)
    if why:
        raise Rejection("path_outside_source", why)
    return decode(read_source(storage.join(source, *rel.split("/")), size, limits), image_size, limits).pixels


def _batches(source: str, image_size: int, limits: Limits) -> Iterator[list[tuple[str, np.ndarray | None, str]]]:
    guard = PathGuard(source)
    batch: list[tuple[str, np.ndarray | None, str]] = []
    for rel, size, _ in sorted(storage.list_files(source)):
        try:
            batch.append((rel, decode_file(source, rel, size, image_size, guard, limits), ""))
        except Rejection as rej:
            batch.append((rel, None, rej.reason))
        except Exception as exc:  # a decoder bug becomes a reason, never a crash; the type name carries no PHI
            batch.append((rel, None, f"internal_error:{type(exc).__name__}"))
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def predict_source(model: EnsembleModel, source: str, limits: Limits = Limits(),
                   progress: Callable[[int], None] | None = None) -> tuple[str, dict]:
    """CSV text with one row per file below ``source``, and counts (predicted per class, refused per reason)."""
    classes = model.card.classes
    spec = model.card.ensemble
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["path", "predicted", *[f"p_{c}" for c in classes], "reason"])
    counts: dict[str, Counter] = {"predicted": Counter(), "refused": Counter()}
    for batch in _batches(source, model.card.preprocessing.image_size, limits):
        decoded = [image for _, image, _ in batch if image is not None]
        probs = iter(model.predict_proba(np.stack(decoded)) if decoded else [])
        for rel, image, reason in batch:
            if image is None:
                writer.writerow([rel, "", *[""] * len(classes), reason])
                counts["refused"][reason] += 1
                continue
            p = next(probs)
            label = classes[int(metrics.predict_labels(p[None], spec.threshold, spec.positive)[0])]
            writer.writerow([rel, label, *[f"{v:.6f}" for v in p], ""])
            counts["predicted"][label] += 1
        if progress is not None:
            progress(len(batch))
    return buffer.getvalue(), {k: dict(sorted(v.items())) for k, v in counts.items()}
