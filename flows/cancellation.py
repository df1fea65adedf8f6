"""Stopping on SIGTERM or SIGINT, the way a Prefect process worker or Kubernetes stops a run (SIGTERM
to the process group, SIGKILL after a grace period): the flow run ends Cancelled, Ray's work is
cancelled and the local Ray shut down, and nothing half-written is published (every object is
written atomically, the model card and member records last), so a rerun resumes from the last
checkpoint. While a flow runs, Prefect's engine turns SIGTERM into its ``TerminationSignal``; the
driver's waits on Ray (``tasks.core.cluster.wait_any``, ``get_all``) let it through as itself."""

from __future__ import annotations

import signal

CRASH_BY_SIGNAL = ("Execution was aborted by a termination signal", "Execution was aborted by an interrupt signal")


class Cancelled(KeyboardInterrupt):
    """SIGTERM or SIGINT arrived: stop now (a KeyboardInterrupt, so Prefect's engine ends the run as
    interrupted and the hook below records it as Cancelled)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


def _raise_cancelled(signum: int, _frame: object) -> None:
    raise Cancelled(signum)


def install() -> None:
    """SIGTERM and SIGINT raise ``Cancelled`` in the main thread (Prefect's engine puts its own SIGTERM
    handler in front during a flow run and hands the signal back to this one when it has finished)."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _raise_cancelled)


def mark_cancelled(flow, flow_run, state) -> None:
    """``on_crashed`` hook of every flow: a run stopped by a signal ends Cancelled, not Crashed."""
    if not (state.message or "").startswith(CRASH_BY_SIGNAL):
        return
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled as CancelledState

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run.id, CancelledState(message=f"{flow.name}: stopped by a signal; "
                                                               "rerun to resume from the last checkpoint"), force=True)


STOPPABLE = {"on_crashed": [mark_cancelled]}  # for @flow: a run stopped by a signal ends Cancelled


def stop_ray() -> None:
    """Cancel this driver's Ray work: shutting down ends its job (its tasks and actors are killed)
    and, on the embedded default, stops the local Ray."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
