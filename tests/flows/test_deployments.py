"""deployments/prefect.yaml against a real `prefect server start` on 127.0.0.1: deploy, a process
worker, a run triggered through the API with custom parameters (what the UI's Run button does),
the run completes and its artifacts are listed."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import _free_port
from tests.corpora import good_corpus

# load-bound: the worker's flow runs start a local Ray of their own, whose node registration Ray waits
# 30 s for; beside the other process's Ray tests (load average 21 on 2 cores) it once took longer.
# make test runs them beside the cancellation tests only
pytestmark = pytest.mark.alone

BIN = os.path.dirname(sys.executable)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _stop(proc: subprocess.Popen) -> None:
    """Stop a process we started, and its children, by process group."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=20)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect-server")
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": url, "PREFECT_SERVER_API_HOST": "127.0.0.1",
           "PREFECT_SERVER_API_PORT": str(port), "PREFECT_UI_API_URL": url, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    log = open(home / "server.log", "wb")
    proc = subprocess.Popen([os.path.join(BIN, "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2)
            break
        except Exception:
            if time.time() > deadline or proc.poll() is not None:
                _stop(proc)
                raise RuntimeError("prefect server did not start: " + (home / "server.log").read_text()[-2000:]) from None
            time.sleep(0.5)
    yield url, env
    _stop(proc)


def _client_call(url: str, fn):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    async def call():
        with temporary_settings(updates={PREFECT_API_URL: url}):
            async with get_client() as client:
                return await fn(client)

    with ThreadPoolExecutor(1) as pool:  # its own thread: Playwright's sync API holds an event loop in this one
        return pool.submit(asyncio.run, call()).result()


TINY = {"members": 1, "architectures": ["seed_cnn"], "train": {"epochs": 1}, "evaluation": {"bootstrap_resamples": 100}}


def _wait(url: str, flow_run_id, timeout: float = 480):
    deadline = time.time() + timeout
    while True:
        state = _client_call(url, lambda c: c.read_flow_run(flow_run_id)).state
        if state.is_final() or time.time() > deadline:
            return state
        time.sleep(2)


def _runs_due(url: str, deployment_id) -> list:
    """The deployment's flow runs expected to start by now. The scheduler's future runs (up to 100
    per deployment) are left out: with them, the API's default limit of 200 rows could hide a new run."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId, FlowRunFilterExpectedStartTime

    due = FlowRunFilter(deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id]),
                        expected_start_time=FlowRunFilterExpectedStartTime(before_=datetime.now(UTC) + timedelta(minutes=1)))
    return _client_call(url, lambda c: c.read_flow_runs(flow_run_filter=due))


def _artifact_keys(url: str, flow_run_id) -> set[str]:
    return {a.key for a in _artifacts(url, flow_run_id)}


def _artifacts(url: str, flow_run_id) -> list:
    """Artifacts of a flow run and of its subflow runs."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, FlowRunFilter, FlowRunFilterParentFlowRunId

    children = _client_call(url, lambda c: c.read_flow_runs(
        flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id]))))
    run_ids = [flow_run_id, *[r.id for r in children]]
    artifacts = _client_call(url, lambda c: c.read_artifacts(
        artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=run_ids))))
    return artifacts


@pytest.fixture(scope="module")
def deployed(prefect_server, tmp_path_factory):
    """The project's prefect.yaml deployed (defaults: a small corpus, via the environment) and a process worker."""
    url, env = prefect_server
    root = tmp_path_factory.mktemp("deployed")
    labels = good_corpus(str(root / "src"), n_patients=24, images_per_patient=3)
    ray_dir = tempfile.mkdtemp(prefix="mfr-", dir="/tmp")
    env = {**env, "MEDFLOW_SOURCE": str(root / "src"), "MEDFLOW_LABELS": labels, "MEDFLOW_DATASET": str(root / "ds"),
           "MEDFLOW_REJECTS": str(root / "rejects.csv"), "MEDFLOW_RUNS": str(root / "runs"),
           "MEDFLOW_REGISTRY": str(root / "registry"), "RAY_TMPDIR": ray_dir}
    prefect = os.path.join(BIN, "prefect")
    for command in ([prefect, "work-pool", "create", "medflow-process", "--type", "process"],
                    [prefect, "--no-prompt", "deploy", "--all", "--prefect-file", "deployments/prefect.yaml"]):
        done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    worker = subprocess.Popen([prefect, "worker", "start", "--pool", "medflow-process"], env=env, cwd=ROOT,
                              stdout=open(root / "worker.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    yield url, root, labels
    _stop(worker)
    shutil.rmtree(ray_dir, ignore_errors=True)


def test_deployments_have_the_schedule_defaults_and_form(deployed):
    url, root, _ = deployed
    nightly = _client_call(url, lambda c: c.read_deployment_by_name("retrain/nightly-retrain"))
    assert nightly.schedules[0].schedule.cron == "0 2 * * *" and nightly.schedules[0].schedule.timezone == "UTC"
    assert nightly.parameters["params"]["ingest"]["dataset"] == str(root / "ds")  # default parameters from the environment
    assert "params" in nightly.parameter_openapi_schema["properties"]  # what the UI renders as the run form
    weekly = _client_call(url, lambda c: c.read_deployment_by_name("retrain/weekly-forced-retrain"))
    assert weekly.parameters["params"]["force_retrain"] is True and weekly.entrypoint == nightly.entrypoint


def test_a_run_with_custom_parameters_triggered_through_the_api_completes(deployed, tmp_path):
    url, root, labels = deployed
    deployment = _client_call(url, lambda c: c.read_deployment_by_name("retrain/nightly-retrain"))
    custom = {"ingest": {"source": str(root / "src"), "labels": labels, "dataset": str(tmp_path / "ds"),
                         "rejects": str(tmp_path / "rejects.csv"), "image_size": 16},
              "runs": str(tmp_path / "runs"), "registry": str(tmp_path / "registry"), "task": "chest", "config": TINY}
    flow_run = _client_call(url, lambda c: c.create_flow_run_from_deployment(deployment.id, parameters={"params": custom}))
    state = _wait(url, flow_run.id)
    assert state.is_completed(), (state, (root / "worker.log").read_text()[-3000:])
    assert {"ingest-summary", "evaluation-test", "evaluation-report", "promotion-chest"} <= _artifact_keys(url, flow_run.id)
    assert os.path.exists(tmp_path / "registry" / "chest" / "pointers" / "00000000.json")


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOT_DIR = os.environ.get("MEDFLOW_SCREENSHOT_DIR")  # set to docs/ to refresh the README's screenshots


def test_the_prefect_ui_starts_a_run_of_the_deployment_and_shows_it_complete(deployed, tmp_path):
    """Headless Chromium (Debian's, driven by Playwright) clicks Run > Quick run on the deployment."""
    from playwright.sync_api import expect, sync_playwright

    url, root, _ = deployed
    ui = url.removesuffix("/api")
    deployment = _client_call(url, lambda c: c.read_deployment_by_name("retrain/nightly-retrain"))
    defaults = deployment.parameters["params"]
    params = {**defaults, "ingest": {**defaults["ingest"], "image_size": 16}, "config": TINY, "task": "ui"}

    async def set_defaults(client):  # what the UI's Edit form does: new default parameters
        from prefect.client.schemas.actions import DeploymentUpdate

        await client.update_deployment(deployment.id, DeploymentUpdate(parameters={"params": params}))

    _client_call(url, set_defaults)
    shots = SCREENSHOT_DIR or str(tmp_path)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{ui}/deployments/deployment/{deployment.id}")
        expect(page.get_by_text("nightly-retrain").first).to_be_visible(timeout=60_000)
        before = {r.id for r in _runs_due(url, deployment.id)}
        page.get_by_role("button", name="Run", exact=True).click()
        page.get_by_text("Quick run").first.click()
        dialog = page.get_by_role("dialog")  # "Run Deployment": the parameter form built from PipelineParams
        expect(dialog.get_by_text("Source").first).to_be_visible(timeout=30_000)
        page.screenshot(path=os.path.join(shots, "prefect-ui-run-form.png"))
        dialog.get_by_role("button", name="Run", exact=True).click()
        deadline, started = time.time() + 60, []
        while not started and time.time() < deadline:  # the run the click created (not the schedule's)
            page.wait_for_timeout(1000)
            started = [r for r in _runs_due(url, deployment.id) if not r.auto_scheduled and r.id not in before]
        assert len(started) == 1, "the UI's Run button did not create exactly one flow run"
        assert started[0].parameters["params"]["task"] == "ui"  # with the deployment's (edited) defaults
        state = _wait(url, started[0].id)
        assert state.is_completed(), (state, (root / "worker.log").read_text()[-3000:])
        page.goto(f"{ui}/runs/flow-run/{started[0].id}")
        expect(page.get_by_text("Completed").first).to_be_visible(timeout=60_000)
        page.screenshot(path=os.path.join(shots, "prefect-ui-flow-run.png"))
        plots = next(a for a in _artifacts(url, started[0].id) if a.key == "evaluation-plots")
        page.goto(f"{ui}/artifacts/artifact/{plots.id}")  # the report's plots, drawn by the UI itself
        images = page.locator("img.markdown-renderer__image")
        expect(images).to_have_count(4, timeout=60_000)
        page.wait_for_load_state("load")
        assert all(images.nth(i).evaluate("img => img.complete && img.naturalWidth > 100") for i in range(4))
        page.screenshot(path=os.path.join(shots, "prefect-ui-plots.png"), full_page=True)
        page.goto(f"{ui}/deployments/deployment/{deployment.id}")
        expect(page.get_by_text("nightly-retrain").first).to_be_visible(timeout=60_000)
        page.screenshot(path=os.path.join(shots, "prefect-ui-deployment.png"))
        browser.close()
    assert os.path.getsize(os.path.join(shots, "prefect-ui-flow-run.png")) > 10_000


def test_medflow_serve_registers_the_nightly_deployment_and_serves_it(prefect_server, tmp_path):
    import yaml

    url, env = prefect_server
    labels = good_corpus(str(tmp_path / "src"), n_patients=4, images_per_patient=2)
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump({"source": str(tmp_path / "src"), "labels": labels, "dataset": str(tmp_path / "ds"),
                                      "rejects": str(tmp_path / "r.csv"), "runs": str(tmp_path / "runs"),
                                      "registry": str(tmp_path / "registry"), "task": "served", "config": TINY}))
    serve = subprocess.Popen([os.path.join(BIN, "medflow"), "serve", "--config", str(config), "--timezone", "Europe/Berlin"],
                             env=env, cwd=str(tmp_path), stdout=open(tmp_path / "serve.log", "wb"), stderr=subprocess.STDOUT,
                             start_new_session=True)
    try:
        deadline = time.time() + 120
        while True:
            deployments = _client_call(url, lambda c: c.read_deployments())
            served = [d for d in deployments if d.name == "nightly-retrain" and d.parameters["params"].get("task") == "served"]
            if served or time.time() > deadline or serve.poll() is not None:
                break
            time.sleep(1)
        assert served, (tmp_path / "serve.log").read_text()[-2000:]
        schedule = served[0].schedules[0].schedule
        assert schedule.cron == "0 2 * * *" and schedule.timezone == "Europe/Berlin"
        assert serve.poll() is None  # still serving
    finally:
        _stop(serve)
