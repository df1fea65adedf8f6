"""Shared fixtures: real Prefect (temporary server), real Ray (local, 2 CPUs), real S3 (moto server)."""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest

from flows.startup import environment_defaults

_SESSION_TMP = tempfile.mkdtemp(prefix="medflow-tests-")
atexit.register(shutil.rmtree, _SESSION_TMP, True)  # Prefect's database and Ray's logs go with the session
os.environ.update(
    PREFECT_HOME=os.path.join(_SESSION_TMP, "prefect"),
    PREFECT_SERVER_ANALYTICS_ENABLED="false",
    PREFECT_LOGGING_TO_API_BATCH_INTERVAL="0.3",
    MEDFLOW_PSEUDONYM_KEY="test-key-0123456789abcdef",
    MEDFLOW_NO_PREFECT_SECRET="1",
    RAY_USAGE_STATS_ENABLED="0",
    RAY_TMPDIR=os.path.join(_SESSION_TMP, "ray"),
    NO_ALBUMENTATIONS_UPDATE="1",
)
os.environ.pop("RAY_ADDRESS", None)
environment_defaults()  # medflow's own defaults for Ray and Prefect, as every command has them
os.makedirs(os.environ["RAY_TMPDIR"], exist_ok=True)

TEST_KEY = os.environ["MEDFLOW_PSEUDONYM_KEY"].encode()


@pytest.fixture(scope="session", autouse=True)
def prefect_api():
    """One real (temporary) Prefect server for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def start_local_ray(**kwargs):
    """A real local Ray with 2 CPUs (two worker processes); workers inherit the S3 environment."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             _temp_dir=os.environ["RAY_TMPDIR"], **kwargs)
    return ray


def environment(pid: int) -> dict[str, str] | None:
    """A process's environment as it was started (None: it has exited)."""
    try:
        variables = open(f"/proc/{pid}/environ", "rb").read().decode(errors="replace").split("\0")
    except OSError:
        return None
    return dict(x.split("=", 1) for x in variables if "=" in x)


def processes_with(title: str, variable: str) -> list[int]:
    """PIDs of the processes whose command line matches ``title`` and whose environment holds
    ``variable`` (``NAME=value``), e.g. the processes of one Ray session or of one Prefect home."""
    name, _, value = variable.partition("=")
    pids = subprocess.run(["pgrep", "-f", title], capture_output=True, text=True).stdout.split()
    return [int(pid) for pid in pids if (environment(int(pid)) or {}).get(name) == value]


def ray_processes(title: str) -> list[int]:
    """This session's Ray processes matching ``title`` (e.g. ``RayTrainWorker``). Only this session's:
    each pytest-xdist process runs a local Ray of its own, and a test that kills a worker must never
    kill the other process's (its workers inherit this session's ``RAY_TMPDIR``)."""
    return processes_with(title, f"RAY_TMPDIR={os.environ['RAY_TMPDIR']}")


@pytest.fixture(scope="session")
def ray_local(s3_endpoint):
    ray = start_local_ray()
    yield ray
    ray.shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto's S3 server on 127.0.0.1, with the environment pointing s3fs and deltalake at it."""
    port = _free_port()
    proc = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while True:
        try:
            urllib.request.urlopen(endpoint, timeout=1)
            break
        except Exception:
            if time.time() > deadline:
                proc.kill()
                raise RuntimeError("moto server did not start") from None
            time.sleep(0.2)
    saved = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")}
    os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_REGION="us-east-1")
    yield endpoint
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def tmp_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def latest_artifact(key: str):
    """The newest Prefect artifact with this key, read through the real API."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async def read():
        async with get_client() as client:
            found = await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
            return max(found, key=lambda a: a.created)

    return asyncio.run(read())


def run_together(fn, times: int = 2) -> list:
    """Call ``fn()`` in ``times`` threads at once; returns each call's result or exception."""
    import threading

    outcomes: list = []

    def call() -> None:
        try:
            outcomes.append(fn())
        except Exception as exc:  # collected: the caller's assertions show it
            outcomes.append(exc)

    threads = [threading.Thread(target=call) for _ in range(times)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


def flow_runs(flow_name: str) -> list:
    """Every run of the flow named ``flow_name``, read through the session's real Prefect API."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    async def read():
        async with get_client() as client:
            return await client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])), limit=200)

    return asyncio.run(read())


END_TO_END = ("tests/train/", "tests/flows/", "tests/core/test_worker_crashes.py")  # whole runs: a minute or two a file


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """End-to-end files first, the quick ones after: ``make test`` hands whole files to its two
    processes in this order, so the last files handed out are short and neither process ends long
    after the other (the order within a file is kept)."""
    items.sort(key=lambda item: not any(part in item.nodeid for part in END_TO_END))
