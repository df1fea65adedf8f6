"""The Ray connection (the local Ray, or ``RAY_ADDRESS``'s cluster with ``tasks`` shipped to it) and
the fan-out pieces that ingestion and prediction share: batch sizing, a bounded number of tasks in
flight, waits that let the driver's signal handlers through, and isolation of crashing inputs."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import ray
from ray.exceptions import RayError, RayTaskError

CONNECT_ATTEMPTS = 3
# the driver's settings that the cluster's worker processes need too (credentials: the nodes' own)
FORWARDED_ENV = ("AWS_ENDPOINT_URL", "AWS_REGION", "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S")
WAIT_SLICE = 1.0  # seconds: how long the driver waits on Ray before its signal handlers may run
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
        env = {k: os.environ[k] for k in FORWARDED_ENV if os.environ.get(k)}
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


def _wait(refs: list[ray.ObjectRef], num_returns: int) -> tuple[list, list]:
    """One slice of ``ray.wait``. A signal handler that raises while Ray's C++ core waits (Prefect's
    SIGTERM bridge, KeyboardInterrupt) comes out as a SystemError caused by that exception: it is
    raised as itself, so that the run stops as a cancelled run, not as a failed task."""
    try:
        return ray.wait(refs, num_returns=num_returns, timeout=WAIT_SLICE)
    except SystemError as exc:
        if isinstance(exc.__cause__, BaseException) and not isinstance(exc.__cause__, Exception):
            raise exc.__cause__ from None
        raise


def wait_any(refs: list[ray.ObjectRef]) -> ray.ObjectRef:
    """The first of ``refs`` to finish, waiting in slices of ``WAIT_SLICE`` seconds so that the
    driver's signal handlers run meanwhile."""
    while True:
        done, _ = _wait(refs, 1)
        if done:
            return done[0]


def get_all(refs: list[ray.ObjectRef]) -> list:
    """``ray.get(refs)``, waiting the same interruptible way."""
    pending = list(refs)
    while pending:
        _, pending = _wait(pending, len(pending))
    return ray.get(list(refs))


def batch_size_for(n_items: int, workers: int, largest: int = 256, smallest: int = 8) -> int:
    """Enough batches to keep every worker busy, few enough to keep per-task overhead small."""
    return max(smallest, min(largest, -(-n_items // (4 * max(workers, 1)))))


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
        yield pending.pop(wait_any(list(pending)))


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
