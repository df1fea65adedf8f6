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

from tasks import dataset
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
    # stop this head by its PIDs (never `ray stop`: it would kill every Ray process on the machine)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = subprocess.run(["pgrep", "-f", temp_dir], capture_output=True, text=True).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), sig)
            except ProcessLookupError:
                pass
        time.sleep(1)
    shutil.rmtree(temp_dir, ignore_errors=True)


def test_ingest_runs_on_a_cluster_by_address(tmp_path, ray_head):
    labels = good_corpus(str(tmp_path / "src"), n_patients=3, images_per_patient=2)
    env = {**os.environ, "RAY_ADDRESS": ray_head, "RAY_AUTH_MODE": "token"}
    env.pop("RAY_TMPDIR", None)
    run = subprocess.run([os.path.join(BIN, "medflow"), "ingest", str(tmp_path / "src"), "--labels", labels,
                          "--dataset", str(tmp_path / "ds"), "--rejects", str(tmp_path / "r.csv"), "--image-size", "16"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "added 6" in run.stdout
    assert dataset.read_index(str(tmp_path / "ds")).num_rows == 6
