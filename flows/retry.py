"""Retry policy shared by the flows' I/O tasks: transient storage/network errors only."""

from __future__ import annotations

from prefect.cache_policies import NONE

PERMANENT_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


def is_transient(_task, _task_run, state) -> bool:
    """Retry timeouts, connection and other I/O errors; never bad input, missing files or bugs."""
    exc = state.data if isinstance(state.data, BaseException) else None
    return isinstance(exc, OSError | TimeoutError | ConnectionError) and not isinstance(exc, PERMANENT_OS_ERRORS)


# For tasks that read or write object storage.
IO_RETRIES = {"retries": 3, "retry_delay_seconds": [2, 10, 30], "retry_condition_fn": is_transient}
# Task results are neither persisted nor cached: they may be large and are rebuilt on a rerun.
QUIET = {"persist_result": False, "cache_policy": NONE}
