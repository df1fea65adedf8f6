"""Only transient I/O errors are retried by the flows' I/O tasks (real Prefect task runs)."""

from __future__ import annotations

import pytest
from prefect import flow, task

from flows.retry import IO_RETRIES


def counting_flow(error: BaseException):
    calls = []

    @task(**{**IO_RETRIES, "retry_delay_seconds": 0})
    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise error
        return len(calls)

    @flow
    def run():
        return flaky()

    return run, calls


def test_transient_errors_are_retried():
    run, calls = counting_flow(ConnectionError("reset by peer"))
    assert run() == 3 and len(calls) == 3


@pytest.mark.parametrize("error", [FileNotFoundError("gone"), ValueError("bad input")])
def test_permanent_errors_fail_at_once(error):
    run, calls = counting_flow(error)
    with pytest.raises(type(error)):
        run()
    assert len(calls) == 1
