import logging
import sys

import pytest
from prefect import flow

from catalogs.errors import CatalogError, SourceError
from flows.common import HEARTBEAT_VARIABLES, direct_run_settings, quiet_bad_input_tracebacks


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


def _heartbeat_frequency():
    from prefect.settings import get_current_settings

    return get_current_settings().flows.heartbeat_frequency


def test_direct_runs_have_no_heartbeats_and_the_setting_comes_back_after(monkeypatch, prefect_harness):
    for name in HEARTBEAT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    before = _heartbeat_frequency()
    assert before is not None  # Prefect 3.8's default: every flow run sends them

    @flow
    def frequency_seen_by_a_run():
        return _heartbeat_frequency()

    with direct_run_settings():
        assert frequency_seen_by_a_run() is None
    assert _heartbeat_frequency() == before


@pytest.mark.parametrize("name", HEARTBEAT_VARIABLES)
def test_heartbeats_asked_for_in_the_environment_are_kept(monkeypatch, name):
    monkeypatch.setenv(name, "60")
    before = _heartbeat_frequency()
    with direct_run_settings():
        assert _heartbeat_frequency() == before


@pytest.mark.parametrize("command, argv, heartbeats", [
    ("synth", ["synth", "x"], False),
    ("serve", ["serve"], True),  # its flow runs are a deployment's, in processes of their own
])
def test_the_cli_turns_heartbeats_off_except_for_serve(monkeypatch, command, argv, heartbeats):
    from flows import cli

    for name in HEARTBEAT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    seen = []
    monkeypatch.setattr(cli, f"_cmd_{command}", lambda args: seen.append(_heartbeat_frequency()))
    assert cli.main(argv) == 0
    assert seen and (seen[0] is not None) is heartbeats
