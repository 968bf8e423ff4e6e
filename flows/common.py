"""Pieces every flow module shares."""

from __future__ import annotations

import logging

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


class UsageError(MorphcatError):
    """Command-line options that contradict each other or lack a companion."""
