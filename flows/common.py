"""Pieces every flow module shares, and how a command run from a terminal stops."""

from __future__ import annotations

import logging
import os
import signal
from contextlib import AbstractContextManager, nullcontext

from catalogs.errors import MorphcatError


class _NoTracebackForBadInput(logging.Filter):
    """Bad input (a ``MorphcatError``) is the user's to fix, not a bug: keep Prefect's one-line
    'Task run failed with exception: …' record but drop the traceback that comes with it."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, MorphcatError):
            record.exc_info = None
            record.exc_text = None
        return True


def quiet_bad_input_tracebacks() -> None:
    """Install the filter on the loggers that report run failures. Logger filters (unlike
    handler filters) survive Prefect re-applying its logging configuration when it starts."""
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _NoTracebackForBadInput) for f in logger.filters):
            logger.addFilter(_NoTracebackForBadInput())


# Prefect reads either name; a user who sets one has asked for heartbeats.
HEARTBEAT_VARIABLES = ("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "PREFECT_RUNNER_HEARTBEAT_FREQUENCY")


def direct_run_settings() -> AbstractContextManager:
    """Prefect settings for flows run in this process, not by a deployment: no flow-run heartbeats
    unless the user asked for them. Heartbeats let a server mark a deployment's run crashed when
    its worker dies; a run in the user's own process has nobody to be marked for, and Prefect 3.8
    ends every sync flow run by waiting out its heartbeat thread's 1-second sleep (~0.9 s of a
    short run's 1.1 s fixed cost, measured by ``morphcat bench throughput``)."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    if any(name in os.environ for name in HEARTBEAT_VARIABLES):
        return nullcontext()
    return temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})


class Stopped(KeyboardInterrupt):
    """SIGINT or SIGTERM reached the command: it unwinds like Ctrl-C (flows end crashed, task
    runners and the temporary server are shut down) and exits with 128 + the signal's number."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_stopped(signum, frame):
    raise Stopped(signum)


def stop_on_signals() -> None:
    """SIGTERM (a service manager, ``kill``) stops the command as Ctrl-C does, instead of ending
    it before any cleanup. A SIGINT the shell ignores (``nohup``, ``&``) stays ignored."""
    signal.signal(signal.SIGTERM, _raise_stopped)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _raise_stopped)
