"""Batch prediction: every file below SOURCE (a volume model: every series) decoded with the
ingestion's own code, then the ensemble.

Each file (series) gets one CSV row ``path, predicted, p_<class>..., reason``: probabilities when it
decoded, an empty prediction and a refusal reason when it did not. One bad input never stops the run.
A volume model's SOURCE is one series folder, a folder of series folders (found by walking it: each
folder holding files is one series) or one multi-frame file; ``path`` is the series folder (or file)
relative to SOURCE's parent folder for a single series, to SOURCE otherwise, ``/``-separated.
``predict`` spreads the files over Ray tasks, so that a decoder which kills its process costs one
row; ``predict_source`` is the same in this process, without that protection.
"""

from __future__ import annotations

import csv
import io
import posixpath
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
from tasks.dicom.volume import decode_series
from tasks.model.store import EnsembleModel, Preprocessing

BATCH = 64
MAX_CHUNK = 1024  # files per Ray task, at most
VOLUME_BATCH = 8

Unit = tuple[str, tuple[tuple[str, int], ...]]  # the CSV's path, and the files it is decoded from (path, size)


def decode_unit(source: str, unit: Unit, preprocessing: Preprocessing, guard: PathGuard, limits: Limits) -> np.ndarray:
    """One file (or series) -> its display image (volume), exactly as ingestion decodes it; raises ``Rejection``."""
    for rel, _ in unit[1]:
        why = guard.reason(rel)
        if why:
            raise Rejection("path_outside_source", why)
    data = [read_source(storage.join(source, *rel.split("/")), size, limits) for rel, size in unit[1]]
    if preprocessing.volumes:
        return decode_series(data, preprocessing.image_size, preprocessing.window, limits).pixels
    return decode(data[0], preprocessing.image_size, limits).pixels


Row = list[str]


def refused_row(rel: str, classes: list[str], reason: str) -> Row:
    """A file that got no prediction: empty label and probabilities, and why."""
    return [rel, "", *[""] * len(classes), reason]


@dataclass(frozen=True)
class Inputs:
    """The folder the CSV's paths are relative to, and its inputs (files, or series) in path order."""

    root: str
    units: list[Unit]


@dataclass
class Predictions:
    """The predictions CSV and its counts: predicted per class, refused per reason."""

    csv: str
    predicted: dict[str, int]
    refused: dict[str, int]


def list_inputs(source: str, volumes: bool = False) -> Inputs:
    """Every file below ``source`` (``volumes``: every folder of files, one series each), or ``source``
    alone when it is a file or one series folder (the CSV's rows, in order)."""
    size = storage.file_size(source)
    if size is not None:
        name = storage.name(source)
        return Inputs(storage.parent(source), [(name, ((name, size),))])
    files = sorted(storage.list_files(source))
    if not volumes:
        return Inputs(source, [(rel, ((rel, size),)) for rel, size, _ in files])
    folders: dict[str, list[tuple[str, int]]] = {}
    for rel, size, _ in files:
        folders.setdefault(posixpath.dirname(rel), []).append((rel, size))
    if list(folders) == [""]:  # SOURCE is one series folder: named as its parent sees it
        name = storage.name(source)
        return Inputs(storage.parent(source), [(name, tuple((f"{name}/{rel}", size) for rel, size in folders[""]))])
    return Inputs(source, [(folder or ".", tuple(found)) for folder, found in sorted(folders.items())])


def _batches(source: str, units: list[Unit], preprocessing: Preprocessing,
             limits: Limits) -> Iterator[list[tuple[str, np.ndarray | None, str]]]:
    guard = PathGuard(source)
    batch: list[tuple[str, np.ndarray | None, str]] = []
    size = VOLUME_BATCH if preprocessing.volumes else BATCH
    for unit in units:
        rel = unit[0]
        try:
            batch.append((rel, decode_unit(source, unit, preprocessing, guard, limits), ""))
        except Rejection as rej:
            batch.append((rel, None, rej.reason))
        except Exception as exc:  # a decoder bug becomes a reason, never a crash; the type name carries no PHI
            batch.append((rel, None, f"internal_error:{type(exc).__name__}"))
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def predict_units(model: EnsembleModel, source: str, units: list[Unit], limits: Limits = Limits(),
                  progress: Callable[[int], None] | None = None) -> list[Row]:
    """CSV rows (without the header) for ``units`` below ``source``: probabilities, or a refusal reason."""
    classes, spec = model.card.classes, model.card.ensemble
    rows: list[Row] = []
    for batch in _batches(source, units, model.card.preprocessing, limits):
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
    """CSV text with one row per file (series) below ``source`` (or for ``source``), and counts; in this process."""
    inputs = list_inputs(source, model.card.preprocessing.volumes)
    return to_csv(model.card.classes, predict_units(model, inputs.root, inputs.units, limits, progress))


@ray.remote(num_cpus=1, max_retries=2)
def _predict_task(model: EnsembleModel, source: str, units: list[Unit], limits: Limits) -> list[Row]:
    torch.set_num_threads(1)  # one core per task: tasks, not threads, share the machine
    return predict_units(model, source, units, limits)


def predict(model: EnsembleModel, source: str, limits: Limits = Limits(),
            progress: Callable[[int], None] | None = None, chunk: int | None = None) -> Predictions:
    """Like ``predict_source``, with the files split into chunks (``chunk`` files each; default
    about four a CPU) decoded and predicted by Ray tasks on the local Ray or ``RAY_ADDRESS``'s
    cluster; rows in path order. A file (series) whose decoder kills its worker process gets a
    ``decode_failed`` row; the other inputs of its chunk are predicted."""
    ensure_ray()
    volumes = model.card.preprocessing.volumes
    inputs = list_inputs(source, volumes)
    source, files = inputs.root, inputs.units
    cpus = cluster_cpus()
    chunk = chunk or batch_size_for(len(files), cpus, largest=MAX_CHUNK // 16 if volumes else MAX_CHUNK,
                                    smallest=VOLUME_BATCH if volumes else BATCH)
    model_ref = ray.put(model)

    def submit(units: list[Unit], retries: int = 2) -> tuple:
        return (_predict_task.options(max_retries=retries).remote(model_ref, source, units, limits),)

    def crashed(unit: Unit) -> Row:
        return refused_row(unit[0], model.card.classes, "decode_failed")

    chunks = {start: files[start : start + chunk] for start in range(0, len(files), chunk)}
    rows: dict[int, list[Row]] = {}
    for start, refs in bounded(iter(chunks), lambda start: submit(chunks[start]), in_flight=2 * cpus):
        rows[start] = isolate_crashes(chunks[start], refs, lambda refs: ray.get(refs[0]),
                                      lambda part: submit(part, retries=0), crashed)
        if progress is not None:
            progress(len(rows[start]))
    return to_csv(model.card.classes, [row for start in chunks for row in rows[start]])

