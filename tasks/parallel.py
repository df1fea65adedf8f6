"""Fan ingestion out over Ray: batches of files per task, a bounded number in flight.

Pixels stay in Ray's object store (spilled to disk when large) until the version is published;
the driver only holds small per-row facts, so its memory does not grow with the corpus.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

import ray
from ray.exceptions import RayError, RayTaskError

from tasks.dicom import Limits
from tasks.ingest import BatchResult, KnownDigests, process_batch
from tasks.labels import Item

CONNECT_ATTEMPTS = 3
T = TypeVar("T")
R = TypeVar("R")


def cluster_address() -> str | None:
    """``RAY_ADDRESS``: a Ray cluster to join; None is the embedded default (a local Ray)."""
    return os.environ.get("RAY_ADDRESS") or None


def cluster_cpus() -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def ensure_ray() -> None:
    """Connect to ``RAY_ADDRESS`` when set, else start a local Ray on this machine's cores."""
    if ray.is_initialized():
        return
    address = cluster_address()
    kwargs: dict = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if address:
        import tasks

        # ship the code; point workers at the same S3 endpoint (credentials: the nodes' own, e.g. IAM roles)
        env = {k: os.environ[k] for k in ("AWS_ENDPOINT_URL", "AWS_REGION") if os.environ.get(k)}
        kwargs["runtime_env"] = {"py_modules": [os.path.dirname(tasks.__file__)], "env_vars": env}
        for attempt in range(CONNECT_ATTEMPTS):  # a cluster head restarting, a network blip: retry with backoff
            try:
                ray.init(address=address, **kwargs)
                return
            except ConnectionError:
                if attempt == CONNECT_ATTEMPTS - 1:
                    raise
                time.sleep(5 * 2**attempt)
    else:
        ray.init(num_cpus=os.cpu_count(), **kwargs)


@ray.remote(num_cpus=1, max_retries=2, num_returns=2)
def _batch_task(source, items, known_sha, key, image_size, limits):
    result = process_batch(source, items, known_sha, key, image_size, limits)
    table, result.table = result.table, None
    return result, table


@dataclass
class Decoded:
    """Per-batch facts on the driver, pixel tables as object references."""

    results: list[BatchResult] = field(default_factory=list)
    tables: list[ray.ObjectRef | None] = field(default_factory=list)  # None: a result without rows
    not_read: int = 0  # files known unchanged by their fingerprint, not read at all


def batch_size_for(n_items: int, workers: int, largest: int = 256, smallest: int = 8) -> int:
    """Enough batches to keep every worker busy, few enough to keep per-task overhead small."""
    return max(smallest, min(largest, -(-n_items // (4 * max(workers, 1)))))


def decode_all(
    source: str,
    items: list[Item],
    known_sha: KnownDigests,
    key: bytes,
    image_size: int,
    limits: Limits = Limits(),
    on_progress: Callable[[int], None] | None = None,
) -> Decoded:
    """Decode every item on Ray; a file whose decoder kills its worker is quarantined (``decode_failed``)."""
    if not items:
        return Decoded()
    ensure_ray()
    workers = cluster_cpus()
    size = batch_size_for(len(items), workers)
    known_ref = ray.put(known_sha)
    key_ref = ray.put(key)
    decoded = Decoded()

    def submit(batch: list[Item], retries: int = 2) -> tuple:
        return _batch_task.options(max_retries=retries).remote(source, batch, known_ref, key_ref, image_size, limits)

    def fetch(refs: tuple) -> list[tuple[BatchResult, ray.ObjectRef]]:
        return [(ray.get(refs[0]), refs[1])]

    def crashed(item: Item) -> tuple[BatchResult, None]:
        return BatchResult(table=None, rejects=[(item.index, "decode_failed", "decoder process crashed")]), None

    batches = (items[i : i + size] for i in range(0, len(items), size))
    for batch, refs in bounded(batches, submit, in_flight=2 * workers):
        for result, table in isolate_crashes(batch, refs, fetch, lambda b: submit(b, retries=0), crashed):
            decoded.results.append(result)
            decoded.tables.append(table)
        if on_progress:
            on_progress(len(batch))
    return decoded


def bounded(batches: Iterator[T], submit: Callable[[T], tuple], in_flight: int) -> Iterator[tuple[T, tuple]]:
    """Submit lazily (``submit`` returns a task's object refs), keep at most ``in_flight`` tasks
    running, yield (batch, refs) as they finish."""
    pending: dict[ray.ObjectRef, tuple[T, tuple]] = {}
    exhausted = False
    while pending or not exhausted:
        while not exhausted and len(pending) < in_flight:
            batch = next(batches, None)
            if batch is None:
                exhausted = True
                break
            refs = submit(batch)
            pending[refs[0]] = (batch, refs)
        if not pending:
            break
        done, _ = ray.wait(list(pending), num_returns=1)
        yield pending.pop(done[0])


def isolate_crashes(batch: list[T], refs: tuple, fetch: Callable[[tuple], list[R]],
                    resubmit: Callable[[list[T]], tuple], crashed: Callable[[T], R]) -> list[R]:
    """``fetch(refs)``: the results of ``batch``'s task. When its worker process died instead (a decoder
    segfault, the memory monitor), the batch runs again in halves, both at once, down to single items:
    only an item that kills its worker on its own becomes ``crashed(item)``. An exception raised by the
    task's code is a bug, not bad input: it propagates."""
    try:
        return fetch(refs)
    except RayTaskError:
        raise
    except RayError:
        if len(batch) == 1:
            return [crashed(batch[0])]
        halves = [batch[: len(batch) // 2], batch[len(batch) // 2 :]]
        rerun = [(half, resubmit(half)) for half in halves]
        return [r for half, half_refs in rerun for r in isolate_crashes(half, half_refs, fetch, resubmit, crashed)]
