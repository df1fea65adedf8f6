"""Start-up: library chatter goes to the log file, not the terminal; the pipeline's parameters nest ingest's."""

from __future__ import annotations

import logging

import pytest
import ray._private.worker as ray_worker

from flows import startup
from flows.ingest import IngestParams
from flows.pipeline import PipelineParams


@pytest.fixture
def restored_logging():
    loggers = {name: (logging.getLogger(name).handlers[:], logging.getLogger(name).propagate)
               for name in (*startup.CHATTY_LOGGERS, "prefect")}
    filters, printer = logging.getLogger("prefect").filters[:], ray_worker.print_to_stdstream
    yield
    for name, (handlers, propagate) in loggers.items():
        logging.getLogger(name).handlers, logging.getLogger(name).propagate = handlers, propagate
    logging.getLogger("prefect").filters, ray_worker.print_to_stdstream = filters, printer


def test_library_chatter_goes_to_the_log_file(tmp_path, capfd, restored_logging):
    log = tmp_path / "logs" / "medflow.log"
    assert startup.route_library_logs(str(log)) == str(log)
    logging.getLogger("ray._private.authentication").warning("Token authentication is enabled for this Ray cluster.")
    logging.getLogger("prefect").info("Starting temporary server on http://127.0.0.1:1")
    ray_worker.print_to_stdstream({"lines": ["WARNING: 8 PYTHON worker processes have been started"], "pid": "raylet",
                                   "is_err": False}, ignore_prefix=False)
    ray_worker.print_to_stdstream({"lines": ["a task's own output"], "pid": 1234, "is_err": False}, ignore_prefix=False)
    out, err = capfd.readouterr()
    text = log.read_text()
    for line in ("Token authentication", "Starting temporary server", "PYTHON worker processes"):
        assert line in text and line not in out + err
    assert "a task's own output" in out  # only the raylet's notices are diverted


def test_prefect_run_logs_still_reach_the_terminal(tmp_path, capfd, restored_logging):
    startup.route_library_logs(str(tmp_path / "medflow.log"))
    logging.getLogger("prefect.engine").warning("a real warning from a flow run")
    assert "a real warning from a flow run" not in (tmp_path / "medflow.log").read_text()


def test_pipeline_params_nest_every_ingest_option(tmp_path):
    flat = {"source": str(tmp_path / "src"), "labels": str(tmp_path / "l.csv"), "dataset": str(tmp_path / "ds"),
            "rejects": str(tmp_path / "r.csv"), "image_size": 32, "seed": 5, "train_fraction": 0.8, "val_fraction": 0.1,
            "test_fraction": 0.1, "rehash": True, "runs": str(tmp_path / "runs"), "registry": str(tmp_path / "reg")}
    params = PipelineParams.model_validate(flat)
    assert params.ingest == IngestParams(**{k: v for k, v in flat.items() if k not in ("runs", "registry")})
    assert PipelineParams.model_validate(params.model_dump(mode="json")) == params  # the nested form round-trips
    schema = PipelineParams.model_json_schema()  # what the Prefect UI's run form is built from
    ingest_fields = schema["$defs"]["IngestParams"]["properties"]
    assert {"seed", "train_fraction", "allow_split_leakage", "rehash", "max_pixels"} <= set(ingest_fields)
