"""A real signal to a real run, the way a Prefect process worker or Kubernetes stops one (SIGTERM to the
process group) or a user does (Ctrl-C: SIGINT): the command stops within 10 s, its flow run ends
Cancelled, Ray's work is cancelled and the local Ray shut down, nothing half-written is published,
and the same command run again resumes from the last checkpoint."""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from tests.conftest import processes_with
from tests.corpora import ingested_corpus

pytestmark = pytest.mark.alone  # "stops within 10 s" is measured beside the deployment tests only, not the Ray-heavy files

BIN = os.path.dirname(sys.executable)
EPOCHS = 20  # ~0.5 s each here: the signal lands after the first, and training stops with it
STOP_WITHIN = 10.0
LEFT_WITHIN = 10.0  # seconds after the command's exit for the processes it started to be gone


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, ray_local):
    root = tmp_path_factory.mktemp("cancel")
    _, uri = ingested_corpus(root, n_patients=30, images_per_patient=4, fractions=(0.7, 0.15, 0.15))
    (root / "run.yaml").write_text(f"members: 1\narchitectures: [seed_cnn]\n"
                                   f"train: {{epochs: {EPOCHS}, early_stopping_patience: {EPOCHS}}}\n")
    return root, uri


@pytest.fixture
def ray_dir():
    """The command's own local Ray folder, found by this path (short: Ray's socket paths have a limit)."""
    folder = tempfile.mkdtemp(prefix="mf-cancel-", dir="/tmp")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def processes_under(folder: str) -> list[str]:
    return subprocess.run(["pgrep", "-f", folder], capture_output=True, text=True).stdout.split()


def gone_within(seconds: float, *finds) -> list:
    """What ``finds`` (each a function listing processes) still list after up to ``seconds``: the
    processes a stopped command leaves (its local Ray's, its temporary API) exit after it does, and
    beside another test's load that takes longer."""
    deadline = time.time() + seconds
    while (left := [pid for find in finds for pid in find()]) and time.time() < deadline:
        time.sleep(0.5)
    return left


def servers_with_home(home: str) -> list[int]:
    """Prefect API servers running with ``PREFECT_HOME=home``."""
    return processes_with("prefect.server.api.server:create_app", f"PREFECT_HOME={home}")


def train_command(root, uri: str, run: str) -> list[str]:
    return [os.path.join(BIN, "medflow"), "train", "--dataset", uri, "--run", run, "--config", str(root / "run.yaml")]


def start_and_signal(command: list[str], env: dict, run: str, signum: int, cwd) -> tuple[float, int, str]:
    """Start ``command`` in a process group of its own, signal the group once the first checkpoint is
    complete, and return (seconds until it exited, its exit code, its stderr).

    Complete, not merely present: Ray Train copies a checkpoint's file into its final folder, so the
    file shows before it is whole, and a signal then leaves a partial file that a rerun rightly skips.
    """
    from tasks.train.worker import latest_checkpoint

    err = open(os.path.join(cwd, "stderr.txt"), "w+")
    proc = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    deadline = time.time() + 300
    while latest_checkpoint(f"{run}/checkpoints/member-0") is None:
        assert proc.poll() is None and time.time() < deadline, open(err.name).read()[-3000:]
        time.sleep(0.1)
    signalled = time.time()
    os.killpg(proc.pid, signum)
    try:
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    err.seek(0)
    return time.time() - signalled, code, err.read()


def assert_stopped_unpublished(run: str) -> int:
    """Nothing half-written was published and training had not finished; returns the last checkpointed epoch."""
    from tasks.train.worker import latest_checkpoint

    assert not os.path.exists(f"{run}/model/model.json") and not glob.glob(f"{run}/model/members/*.json")
    stopped_after = latest_checkpoint(f"{run}/checkpoints/member-0")["epoch"]
    assert stopped_after < EPOCHS - 1, "the run had finished training before it was stopped"
    return stopped_after


def assert_resumed(run: str, stopped_after: int) -> None:
    record = json.load(open(f"{run}/model/members/member-0.json"))
    # continued, not restarted: from the last checkpoint Ray Train had registered, at most the newest written
    assert 0 <= record["resumed_from"] <= stopped_after and record["epochs_run"] == EPOCHS


def test_sigterm_to_the_process_group_cancels_the_run(dataset, tmp_path, ray_dir):
    from prefect.settings import PREFECT_API_URL

    from tests.conftest import flow_runs

    root, uri = dataset
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "RAY_TMPDIR": ray_dir}
    run = str(tmp_path / "run")
    took, code, stderr = start_and_signal(train_command(root, uri, run), env, run, signal.SIGTERM, str(tmp_path))
    assert took < STOP_WITHIN and code == 128 + signal.SIGTERM, (took, code, stderr[-3000:])
    assert "stopped by SIGTERM" in stderr.splitlines()[-1]
    assert not gone_within(LEFT_WITHIN, lambda: processes_under(ray_dir))  # the local Ray dies with its driver
    [train_run] = [r for r in flow_runs("train") if r.parameters["params"]["run"] == run]
    assert train_run.state.is_cancelled(), train_run.state
    stopped_after = assert_stopped_unpublished(run)
    rerun = subprocess.run(train_command(root, uri, run), env=env, cwd=str(root), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]  # the same command again
    assert_resumed(run, stopped_after)


def test_ctrl_c_in_the_embedded_mode_stops_everything_it_started(dataset, tmp_path, ray_dir):
    root, uri = dataset
    home = str(tmp_path / "prefect-home")  # the temporary Prefect server's own home, found by this path
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(RAY_TMPDIR=ray_dir, PREFECT_HOME=home)
    run = str(tmp_path / "run")
    took, code, stderr = start_and_signal(train_command(root, uri, run), env, run, signal.SIGINT, str(tmp_path))
    assert took < STOP_WITHIN and code == 128 + signal.SIGINT, (took, code, stderr[-3000:])
    assert "stopped by SIGINT" in stderr.splitlines()[-1]
    # the local Ray and the temporary API are stopped too
    assert not gone_within(LEFT_WITHIN, lambda: processes_under(ray_dir), lambda: servers_with_home(home))
    stopped_after = assert_stopped_unpublished(run)
    # what Ctrl-C left resumes too (the command's own rerun is the SIGTERM test's: here the train flow in
    # this process, on the session's Prefect API and local Ray, spares a second temporary server's start)
    from flows.train import TrainParams, train_flow
    from tasks.model.config import load_config

    train_flow(TrainParams(dataset=uri, run=run, config=load_config(str(root / "run.yaml"))))
    assert_resumed(run, stopped_after)
