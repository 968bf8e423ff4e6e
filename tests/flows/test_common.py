import logging
import sys

import pytest

from catalogs.errors import CatalogError, SourceError
from flows.common import quiet_bad_input_tracebacks


def _record_for(exc: BaseException) -> logging.LogRecord:
    try:
        raise exc
    except BaseException:
        info = sys.exc_info()
    return logging.LogRecord("prefect.task_runs", logging.ERROR, __file__, 1, "failed", (), info)


@pytest.mark.parametrize("exc, keeps_traceback", [(SourceError("bad csv"), False), (CatalogError("x"), False),
                                                  (RuntimeError("a bug"), True)])
def test_only_bad_input_loses_its_traceback(exc, keeps_traceback):
    quiet_bad_input_tracebacks()
    quiet_bad_input_tracebacks()  # idempotent
    logger = logging.getLogger("prefect.task_runs")
    assert sum(type(f).__name__ == "_NoTracebackForBadInput" for f in logger.filters) == 1
    record = _record_for(exc)
    assert logger.filter(record)
    assert (record.exc_info is not None) is keeps_traceback
