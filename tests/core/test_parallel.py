"""Ray fan-out with real workers: batching, and a worker killed mid-run loses no file."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from tasks.core import cluster as parallel
from tasks.ingest import decode as ingest_decode
from tasks.ingest.batch import KnownDigests
from tasks.ingest.labels import plan
from tests.conftest import TEST_KEY, ray_processes
from tests.corpora import good_corpus


def test_batch_sizes_keep_workers_busy():
    assert parallel.batch_size_for(10_000, 2) == 256
    assert parallel.batch_size_for(100, 2) == 13
    assert parallel.batch_size_for(3, 2) == 8


def _kill_one_worker(stop: threading.Event) -> list[int]:
    killed: list[int] = []
    while not stop.is_set() and not killed:
        out = ray_processes("ray::_batch_task")
        if out:
            os.kill(out[0], signal.SIGKILL)
            killed.append(out[0])
        time.sleep(0.01)
    return killed


def test_a_killed_worker_loses_no_file(tmp_path, ray_local):
    labels = good_corpus(str(tmp_path / "src"), n_patients=60, images_per_patient=10)
    work = plan(str(tmp_path / "src"), labels)
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=lambda: killed.extend(_kill_one_worker(stop)))
    killer.start()
    decoded = ingest_decode.decode_all(str(tmp_path / "src"), work.items, KnownDigests(), TEST_KEY, 16)
    stop.set()
    killer.join()
    assert killed, "no worker was running a batch to kill"
    indexes = sorted(i for r in decoded.results for i in r.index)
    assert indexes == list(range(len(work.items)))  # every file decoded exactly once
    assert not any(r.rejects for r in decoded.results)


def test_connecting_to_a_cluster_retries_connection_errors_with_backoff(monkeypatch):
    """The retry policy only (Ray itself is stood in for): two refused connections, then success."""
    import ray

    from tasks.core import cluster as parallel

    calls, sleeps = [], []

    def init(address=None, **kwargs):
        calls.append(address)
        if len(calls) < 3:
            raise ConnectionError("head not reachable")

    monkeypatch.setenv("RAY_ADDRESS", "head.example:6379")
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(parallel.time, "sleep", sleeps.append)
    parallel.ensure_ray()
    assert calls == ["head.example:6379"] * 3 and sleeps == [5, 10]
    calls.clear()

    def down(address=None, **kwargs):
        calls.append(address)
        raise ConnectionError("down")

    monkeypatch.setattr(ray, "init", down)
    with pytest.raises(ConnectionError, match="down"):
        parallel.ensure_ray()
    assert len(calls) == parallel.CONNECT_ATTEMPTS
