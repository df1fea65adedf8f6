"""Decode the planned files on Ray: batches of files per task, a bounded number in flight.

Pixels stay in Ray's object store (spilled to disk when large) until the version is published;
the driver only holds small per-row facts, so its memory does not grow with the corpus.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import ray

from tasks.core.cluster import batch_size_for, bounded, cluster_cpus, ensure_ray, isolate_crashes
from tasks.core.refusals import Reason, RefusedItem
from tasks.dicom.header import Limits
from tasks.ingest.batch import BatchResult, KnownDigests, VolumeOptions, process_batch
from tasks.ingest.labels import Item


@ray.remote(num_cpus=1, max_retries=2, num_returns=2)
def _batch_task(source, items, known_sha, key, image_size, limits, volume):
    result = process_batch(source, items, known_sha, key, image_size, limits, volume)
    table, result.table = result.table, None
    return result, table


@dataclass
class Decoded:
    """Per-batch facts on the driver, pixel tables as object references."""

    results: list[BatchResult] = field(default_factory=list)
    tables: list[ray.ObjectRef | None] = field(default_factory=list)  # None: a result without rows
    not_read: int = 0  # files known unchanged by their fingerprint, not read at all


def decode_all(
    source: str,
    items: list[Item],
    known_sha: KnownDigests,
    key: bytes,
    image_size: int,
    limits: Limits = Limits(),
    on_progress: Callable[[int], None] | None = None,
    volume: VolumeOptions | None = None,
) -> Decoded:
    """Decode every item (``volume``: every series) on Ray; a file whose decoder kills its worker is
    quarantined (``decode_failed``)."""
    if not items:
        return Decoded()
    ensure_ray()
    workers = cluster_cpus()
    size = batch_size_for(len(items), workers) if volume is None else \
        batch_size_for(len(items), workers, largest=4, smallest=1)  # a task assembles whole series, few at a time
    known_ref = ray.put(known_sha)
    key_ref = ray.put(key)
    decoded = Decoded()

    def submit(batch: list[Item], retries: int = 2) -> tuple:
        return _batch_task.options(max_retries=retries).remote(source, batch, known_ref, key_ref, image_size, limits, volume)

    def fetch(refs: tuple) -> list[tuple[BatchResult, ray.ObjectRef]]:
        return [(ray.get(refs[0]), refs[1])]

    def crashed(item: Item) -> tuple[BatchResult, None]:
        return BatchResult(table=None, rejects=[RefusedItem(item.index, Reason.DECODE_FAILED, "decoder process crashed")]), None

    batches = (items[i : i + size] for i in range(0, len(items), size))
    for batch, refs in bounded(batches, submit, in_flight=2 * workers):
        for result, table in isolate_crashes(batch, refs, fetch, lambda b: submit(b, retries=0), crashed):
            decoded.results.append(result)
            decoded.tables.append(table)
        if on_progress:
            on_progress(len(batch))
    return decoded


