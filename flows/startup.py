"""Start-up shared by the CLI, the flows' entry points and the benchmarks: environment defaults for
the embedded mode, library chatter routed to a log file, Prefect's temporary API and Ray started
together. Call ``environment_defaults`` before importing Prefect (it reads the environment at import)."""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import types

ENV_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "NO_ALBUMENTATIONS_UPDATE": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
    # how long the driver's Ray shutdown waits to flush task events (for Ray's dashboard, which medflow
    # does not start): the default 5 s, spent in full when a SIGTERM to the process group has already
    # stopped the local Ray, would put a cancelled command past its 10 s
    "RAY_task_events_shutdown_flush_timeout_ms": "500",
    # how often a Ray Train controller polls its workers (default 2 s): a member's end was noticed 2.8-3.8 s
    # after its last check, 1.7-1.8 s at 0.5 s, on every member of every run
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
}
# Loggers whose messages are library chatter on the terminal: routed to the log file instead.
# ``ray.init`` clears the "ray" logger's handlers, so its children get the file handler themselves.
CHATTY_LOGGERS = ("ray", "ray._private", "ray.train", "ray.tune", "ray.data", "ray.util", "ray.air", "uvicorn", "filelock")
LOG_ENV = "MEDFLOW_LOG_FILE"


def environment_defaults() -> None:
    """Quiet, self-contained defaults for the embedded mode (each can be overridden by the environment)."""
    for name, value in ENV_DEFAULTS.items():
        os.environ.setdefault(name, value)


class _Divert(logging.Filter):
    """On a logger: records logged on it go to ``handler`` only (records propagated from its
    children, such as Prefect's flow-run logs, are not affected)."""

    def __init__(self, handler: logging.Handler) -> None:
        super().__init__()
        self.handler = handler

    def filter(self, record: logging.LogRecord) -> bool:
        self.handler.handle(record)
        return False


def route_library_logs(log_file: str | None = None) -> str:
    """Send library chatter to ``log_file`` (default ``$MEDFLOW_LOG_FILE`` or ``./medflow.log``)
    instead of the terminal: Ray's log records (its token-authentication notice among them), the
    raylet's worker-start warnings it forwards to the driver, and Prefect's temporary-server advice.
    medflow's own output, Prefect's flow and task run logs and real errors stay on the terminal."""
    path = os.path.abspath(log_file or os.environ.get(LOG_ENV) or "medflow.log")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    for name in CHATTY_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.propagate = False
    prefect_logger = logging.getLogger("prefect")  # the temporary server's advice is logged on it directly
    prefect_logger.filters = [f for f in prefect_logger.filters if not isinstance(f, _Divert)] + [_Divert(handler)]
    _divert_raylet_messages(handler)
    return path


def _divert_raylet_messages(handler: logging.Handler) -> None:
    """Ray prints the raylet's messages to the driver's stdout with no setting to turn them off;
    its printing function is wrapped so that they go to the log file instead."""
    import ray._private.worker as ray_worker

    printer = getattr(ray_worker.print_to_stdstream, "__wrapped__", ray_worker.print_to_stdstream)

    def print_to_stdstream(data: dict, ignore_prefix: bool) -> None:
        if data.get("pid") != "raylet":
            return printer(data, ignore_prefix)
        for line in data.get("lines", []):
            handler.handle(logging.makeLogRecord({"name": "ray.raylet", "levelname": "WARNING", "msg": line}))

    print_to_stdstream.__wrapped__ = printer
    ray_worker.print_to_stdstream = print_to_stdstream


def start_services(log_file: str | None = None) -> str:
    """Route library chatter to ``log_file`` (see ``route_library_logs``), then start Prefect's
    temporary server (embedded mode only) while Ray starts: together they are most of a run's fixed
    cost, and neither needs the other to start. Returns the log file's path."""
    from prefect.settings import PREFECT_API_URL

    from flows import cancellation
    from tasks.core.cluster import ensure_ray

    path = route_library_logs(log_file)
    thread = None
    if not PREFECT_API_URL.value():
        thread = threading.Thread(target=lambda: _temporary_server().start(), daemon=True)
        thread.start()
    ensure_ray()  # Ray must be initialised from the main thread
    if thread:
        thread.join()
    if threading.current_thread() is threading.main_thread():
        cancellation.install()  # after ray.init, which puts a SIGTERM handler of its own (sys.exit) in place
    return path


# The temporary API's uvicorn, run in a session of its own (a SIGTERM or Ctrl-C to medflow's process
# group must not take down the API that the run reports its cancellation to), stopped when its parent
# is gone however that parent ended (medflow stops it at exit; this covers SIGKILL).
_FATE_SHARED = """
import os, runpy, signal, sys, threading, time
parent = int(sys.argv[1])
def watch():
    while os.getppid() == parent:
        time.sleep(0.5)
    os.kill(os.getpid(), signal.SIGTERM)
threading.Thread(target=watch, daemon=True).start()
sys.argv = ["uvicorn", *sys.argv[2:]]
runpy.run_module("uvicorn", run_name="__main__", alter_sys=True)
"""


def _temporary_server():
    """Prefect's temporary server (the embedded mode's API), with its process started as above.
    Prefect's own clients find it: the server object is one per port, shared with the base class."""
    import prefect.server.api.server as server_module

    class SessionServer(server_module.SubprocessASGIServer):
        def _run_uvicorn_command(self) -> subprocess.Popen:
            command: dict = {}  # Prefect's own command line and environment, recorded, then run our way
            real, server_module.subprocess = server_module.subprocess, types.SimpleNamespace(
                Popen=lambda args, env=None, **_: command.update(args=args, env=env))
            try:
                super()._run_uvicorn_command()
            finally:
                server_module.subprocess = real
            python, _, _, *uvicorn_args = command["args"]  # [python, "-m", "uvicorn", ...]
            return subprocess.Popen([python, "-c", _FATE_SHARED, str(os.getpid()), *uvicorn_args], env=command["env"],
                                    start_new_session=True)

    return SessionServer()
