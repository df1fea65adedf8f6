"""`medflow ingest` against a separately started Ray head through RAY_ADDRESS (code shipped to the
cluster with runtime_env), not the embedded local Ray."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from tasks.data import dataset
from tests.conftest import _free_port
from tests.corpora import good_corpus

BIN = os.path.dirname(sys.executable)


@pytest.fixture
def ray_head():
    # a short folder: Ray's socket paths live below it and AF_UNIX paths are limited to 107 bytes
    temp_dir, port = tempfile.mkdtemp(prefix="mf-ray-", dir="/tmp"), _free_port()
    subprocess.run([os.path.join(BIN, "ray"), "start", "--head", f"--port={port}", "--num-cpus=2",
                    "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp_dir}"],
                   check=True, capture_output=True, timeout=120)
    yield f"127.0.0.1:{port}"
    # stop this head by its PIDs (never `ray stop`: it would kill every Ray process on the machine); the
    # Ray client server it started names its port, not its temp dir
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = subprocess.run(["pgrep", "-f", "--", f"{temp_dir}|--address=[0-9.]+:{port}( |$)"], capture_output=True,
                              text=True).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), sig)
            except ProcessLookupError:
                pass
        time.sleep(1)
    shutil.rmtree(temp_dir, ignore_errors=True)


def session_api() -> dict[str, str]:
    """The session's Prefect API for the commands: each would otherwise start a temporary server of its own."""
    from prefect.settings import PREFECT_API_URL

    return {"PREFECT_API_URL": PREFECT_API_URL.value()}


def test_ingest_runs_on_a_cluster_by_address(tmp_path, ray_head):
    labels = good_corpus(str(tmp_path / "src"), n_patients=3, images_per_patient=2)
    env = {**os.environ, **session_api(), "RAY_ADDRESS": ray_head, "RAY_AUTH_MODE": "token"}
    env.pop("RAY_TMPDIR", None)
    run = subprocess.run([os.path.join(BIN, "medflow"), "ingest", str(tmp_path / "src"), "--labels", labels,
                          "--dataset", str(tmp_path / "ds"), "--rejects", str(tmp_path / "r.csv"), "--image-size", "16"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "added 6" in run.stdout
    assert dataset.read_index(str(tmp_path / "ds")).num_rows == 6


def environment_without_the_project(folder: str) -> str:
    """A Python environment with every pinned package (the test venv's site-packages on its path) but
    without medflow, flows or tasks (the editable install's .pth is not processed there): what a
    cluster node that installed requirements.txt but not the project has. Returns its ``ray`` command."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", folder], check=True, timeout=120)
    python = os.path.join(folder, "bin", "python")
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    ours = subprocess.run([sys.executable, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    with open(os.path.join(site, "pinned-packages.pth"), "w") as f:
        f.write(ours + "\n")  # a path line: added to sys.path, its own .pth files (the editable install) not run
    ray = os.path.join(folder, "bin", "ray")
    with open(ray, "w") as f:
        f.write(f"#!/bin/sh\nexec {python} -c 'import sys; from ray.scripts.scripts import main; sys.exit(main())' \"$@\"\n")
    os.chmod(ray, 0o755)
    return ray


@pytest.fixture
def two_node_cluster(s3_endpoint):
    """cluster/local-cluster.sh: a head and one worker node, 1 CPU each, stopped by the script (PIDs).
    The nodes run from an environment in which medflow, flows and tasks cannot be imported."""
    state = tempfile.mkdtemp(prefix="mfc-", dir="/tmp")
    ray = environment_without_the_project(os.path.join(state, "env"))
    python = os.path.join(state, "env", "bin", "python")
    for module in ("medflow", "flows", "tasks"):  # from a folder outside the checkout, as on a remote node
        probe = subprocess.run([python, "-c", f"import {module}"], cwd=state, capture_output=True, text=True)
        assert "ModuleNotFoundError" in probe.stderr, module
    assert subprocess.run([python, "-c", "import ray, torch, monai, deltalake"], cwd=state).returncode == 0
    env = {**os.environ, "MEDFLOW_CLUSTER_DIR": state, "MEDFLOW_RAY_PORT": str(_free_port()), "RAY_BIN": ray}
    env.pop("RAY_TMPDIR", None)
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "cluster", "local-cluster.sh")
    started = subprocess.run([script, "start", "1", "1"], env=env, capture_output=True, text=True, timeout=180)
    assert started.returncode == 0, started.stderr
    address = started.stdout.split("RAY_ADDRESS=")[1].split()[0]
    yield address
    subprocess.run([script, "stop"], env=env, capture_output=True, timeout=60)
    port = env["MEDFLOW_RAY_PORT"]
    assert not subprocess.run(["pgrep", "-f", "--", f"{state}|--address=[0-9.]+:{port}( |$)"], capture_output=True,
                              text=True).stdout.strip()  # every process of the cluster is gone, the client server too
    shutil.rmtree(state, ignore_errors=True)


def test_every_command_runs_on_nodes_without_the_project_with_data_on_s3(tmp_path, two_node_cluster):
    """ingest, train (one DDP worker per node), evaluate and predict through RAY_ADDRESS, the driver run
    from a folder outside the checkout: the code reaches the nodes only through runtime_env."""
    from tasks.core import storage
    from tests.core.test_s3 import upload

    fs = storage.filesystem("s3://")
    if not fs.exists("medflow-cluster"):
        fs.mkdir("medflow-cluster")
    labels = good_corpus(str(tmp_path / "src"), n_patients=24, images_per_patient=3)
    upload(str(tmp_path / "src"), "s3://medflow-cluster/source")
    (tmp_path / "run.yaml").write_text(
        "members: 1\narchitectures: [seed_cnn]\nworkers: 2\nplacement_strategy: SPREAD\n"
        "train: {epochs: 2, batch_size: 16}\n")
    env = {**os.environ, **session_api(), "RAY_ADDRESS": two_node_cluster, "RAY_AUTH_MODE": "token"}
    env.pop("RAY_TMPDIR", None)
    medflow = os.path.join(BIN, "medflow")
    commands = [
        [medflow, "ingest", "s3://medflow-cluster/source", "--labels", "s3://medflow-cluster/source/labels.csv",
         "--dataset", "s3://medflow-cluster/ds", "--rejects", str(tmp_path / "r.csv"), "--image-size", "16"],
        [medflow, "train", "--dataset", "s3://medflow-cluster/ds", "--run", "s3://medflow-cluster/run",
         "--config", str(tmp_path / "run.yaml")],
        [medflow, "evaluate", "--run", "s3://medflow-cluster/run"],  # val/test streamed from s3, report written there
        [medflow, "predict", "--model", "s3://medflow-cluster/run", "s3://medflow-cluster/source",  # Ray tasks on the cluster
         "--out", "s3://medflow-cluster/pred.csv"],
    ]
    commands_out = []
    for command in commands:
        run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=400, cwd=str(tmp_path))
        assert run.returncode == 0, run.stderr[-3000:]
        commands_out.append(run.stdout)
    assert os.path.exists(labels)
    record = storage.read_json("s3://medflow-cluster/run/model/members/member-0.json")
    assert len(set(record["worker_nodes"])) == 2  # rank 0 and rank 1 ran on different nodes
    assert record["epochs_run"] == 2
    assert fs.glob("medflow-cluster/run/checkpoints/member-0/checkpoint_*/state.pt")  # checkpoints on s3
    assert fs.exists("medflow-cluster/run/report/index.html") and fs.exists("medflow-cluster/run/metrics.json")
    assert "test: AUC" in commands_out[2]
    predictions = storage.read_bytes("s3://medflow-cluster/pred.csv").decode().splitlines()
    assert len(predictions) == 1 + len(fs.find("medflow-cluster/source"))  # a row for every file, labels CSV included
