"""Batch prediction: every file below SOURCE decoded with the ingestion's own code, then the ensemble.

Each file gets one CSV row ``path, predicted, p_<class>..., reason``: probabilities when it decoded,
an empty prediction and a refusal reason when it did not. One bad file never stops the run.
``predict`` spreads the files over Ray tasks, so that a decoder which kills its process costs one
row; ``predict_source`` is the same in this process, without that protection.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import ray
import torch

from tasks.core import metrics, storage
from tasks.core.cluster import batch_size_for, bounded, cluster_cpus, ensure_ray, isolate_crashes
from tasks.core.refusals import Rejection
from tasks.dicom.decode import decode
from tasks.dicom.header import Limits
from tasks.dicom.source import PathGuard, read_source
from tasks.model.store import EnsembleModel

BATCH = 64
MAX_CHUNK = 1024  # files per Ray task, at most


def decode_file(source: str, rel: str, size: int, image_size: int, guard: PathGuard, limits: Limits) -> np.ndarray:
    """One file -> its display image, exactly as ingestion decodes it; raises ``Rejection``."""
    why = guard.reason(rel)
    if why:
        raise Rejection("path_outside_source", why)
    return decode(read_source(storage.join(source, *rel.split("/")), size, limits), image_size, limits).pixels


Row = list[str]


def refused_row(rel: str, classes: list[str], reason: str) -> Row:
    """A file that got no prediction: empty label and probabilities, and why."""
    return [rel, "", *[""] * len(classes), reason]


@dataclass(frozen=True)
class Inputs:
    """The folder the CSV's paths are relative to, and its files as (relative path, size) in path order."""

    root: str
    files: list[tuple[str, int]]


@dataclass
class Predictions:
    """The predictions CSV and its counts: predicted per class, refused per reason."""

    csv: str
    predicted: dict[str, int]
    refused: dict[str, int]


def list_inputs(source: str) -> Inputs:
    """Every file below ``source``, or ``source`` alone when it is a file (the CSV's rows, in order)."""
    size = storage.file_size(source)
    if size is not None:
        return Inputs(storage.parent(source), [(storage.name(source), size)])
    return Inputs(source, [(rel, size) for rel, size, _ in sorted(storage.list_files(source))])


def _batches(source: str, files: list[tuple[str, int]], image_size: int,
             limits: Limits) -> Iterator[list[tuple[str, np.ndarray | None, str]]]:
    guard = PathGuard(source)
    batch: list[tuple[str, np.ndarray | None, str]] = []
    for rel, size in files:
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


def predict_files(model: EnsembleModel, source: str, files: list[tuple[str, int]], limits: Limits = Limits(),
                  progress: Callable[[int], None] | None = None) -> list[Row]:
    """CSV rows (without the header) for ``files`` below ``source``: probabilities, or a refusal reason."""
    classes, spec = model.card.classes, model.card.ensemble
    rows: list[Row] = []
    for batch in _batches(source, files, model.card.preprocessing.image_size, limits):
        decoded = [image for _, image, _ in batch if image is not None]
        probs = iter(model.predict_proba([np.stack(decoded)]) if decoded else [])
        for rel, image, reason in batch:
            if image is None:
                rows.append(refused_row(rel, classes, reason))
                continue
            p = next(probs)
            label = classes[int(metrics.predict_labels(p[None], spec.threshold, spec.positive)[0])]
            rows.append([rel, label, *[f"{v:.6f}" for v in p], ""])
        if progress is not None:
            progress(len(batch))
    return rows


def to_csv(classes: list[str], rows: list[Row]) -> Predictions:
    """The predictions CSV and its counts."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["path", "predicted", *[f"p_{c}" for c in classes], "reason"])
    writer.writerows(rows)
    predicted, refused = Counter(r[1] for r in rows if not r[-1]), Counter(r[-1] for r in rows if r[-1])
    return Predictions(buffer.getvalue(), dict(sorted(predicted.items())), dict(sorted(refused.items())))


def predict_source(model: EnsembleModel, source: str, limits: Limits = Limits(),
                   progress: Callable[[int], None] | None = None) -> Predictions:
    """CSV text with one row per file below ``source`` (or for ``source``, a file), and counts; in this process."""
    inputs = list_inputs(source)
    return to_csv(model.card.classes, predict_files(model, inputs.root, inputs.files, limits, progress))


@ray.remote(num_cpus=1, max_retries=2)
def _predict_task(model: EnsembleModel, source: str, files: list[tuple[str, int]], limits: Limits) -> list[Row]:
    torch.set_num_threads(1)  # one core per task: tasks, not threads, share the machine
    return predict_files(model, source, files, limits)


def predict(model: EnsembleModel, source: str, limits: Limits = Limits(),
            progress: Callable[[int], None] | None = None, chunk: int | None = None) -> Predictions:
    """Like ``predict_source``, with the files split into chunks (``chunk`` files each; default
    about four a CPU) decoded and predicted by Ray tasks on the local Ray or ``RAY_ADDRESS``'s
    cluster; rows in path order. A file whose decoder kills its worker process gets a
    ``decode_failed`` row; the other files of its chunk are predicted."""
    ensure_ray()
    inputs = list_inputs(source)
    source, files = inputs.root, inputs.files
    cpus = cluster_cpus()
    chunk = chunk or batch_size_for(len(files), cpus, largest=MAX_CHUNK, smallest=BATCH)
    model_ref = ray.put(model)

    def submit(files: list[tuple[str, int]], retries: int = 2) -> tuple:
        return (_predict_task.options(max_retries=retries).remote(model_ref, source, files, limits),)

    def crashed(file: tuple[str, int]) -> Row:
        return refused_row(file[0], model.card.classes, "decode_failed")

    chunks = {start: files[start : start + chunk] for start in range(0, len(files), chunk)}
    rows: dict[int, list[Row]] = {}
    for start, refs in bounded(iter(chunks), lambda start: submit(chunks[start]), in_flight=2 * cpus):
        rows[start] = isolate_crashes(chunks[start], refs, lambda refs: ray.get(refs[0]),
                                      lambda part: submit(part, retries=0), crashed)
        if progress is not None:
            progress(len(rows[start]))
    return to_csv(model.card.classes, [row for start in chunks for row in rows[start]])

