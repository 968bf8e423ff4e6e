"""Stopping long commands from outside, as a terminal's Ctrl-C (SIGINT to the whole foreground
process group) and a service manager's SIGTERM do: the command ends within seconds, says so, and
leaves no process behind, its temporary Prefect server included."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from catalogs.contract import Catalog, write_catalog
from catalogs.synthetic import render_survey
from tests.flows.prefect_server import BIN, _stop, _wait, prefect_server, registered_deployments
from tests.flows.processes import left_after, tagged

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")]

STOP_BOUND = 20  # s: generous on a loaded 2-core machine; the commands take a few


def _as_a_terminal_job() -> None:
    """In the child before exec: SIGINT handled by default, as for a terminal's foreground job,
    even where this test runs with it ignored (``nohup``, ``&``), which the child would inherit."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _without_api(tmp_path: Path) -> tuple[dict[str, str], str]:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    # INFO: the tests wait for Prefect's "Beginning flow run" line, which a temporary server hides.
    return tagged(env | {"PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                         "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "INFO"})


def test_ctrl_c_stops_a_training_run_and_leaves_nothing(tmp_path):
    root = tmp_path / "survey"
    table = render_survey(root, n=40, seed=5, size=64, mix="balanced", workers=1)
    catalog = write_catalog(Catalog(table, root, "synthetic"), root / "catalog.parquet")
    env, tag = _without_api(tmp_path)
    out, log_path = tmp_path / "models", tmp_path / "train.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen([str(BIN / "morphcat"), "train", str(catalog), "--out", str(out), "--models",
                                 "classifier", "--epochs", "1000", "--image-size", "32"], env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_as_a_terminal_job)
    try:
        _wait(lambda: "Beginning flow run" in log_path.read_text(), 300, "the training flow starting", proc)
        time.sleep(3)  # into the epochs
        assert proc.poll() is None
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        started = time.monotonic()
        code = proc.wait(STOP_BOUND)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    seconds = time.monotonic() - started
    output = log_path.read_text()
    assert code == 128 + signal.SIGINT, output[-3000:]
    assert "morphcat train: stopped by SIGINT" in output, output[-3000:]
    assert left_after(tag, 15) == [], f"exited after {seconds:.1f} s"
    assert not out.exists() or not any(out.iterdir())  # stopped mid-fit: no model, and no part of one


def test_serve_stops_on_sigterm_after_its_server_went_away(tmp_path):
    """The Prefect server goes first (a restart, a network cut), then a service manager stops
    ``serve``: it must exit within the bound, saying which deployments it could not pause."""
    home = tmp_path / "prefect-home"
    home.mkdir()
    with prefect_server(home) as (server_env, server):
        env, tag = tagged(server_env)
        log_path = tmp_path / "serve.log"
        with log_path.open("w") as log:
            proc = subprocess.Popen([str(BIN / "morphcat"), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait(lambda: registered_deployments(env) == 3, 180, "morphcat serve registering its deployments", proc)
            _wait(lambda: "morphcat serve: serving" in log_path.read_text(), 60, "serve saying it serves", proc)
            _stop(server)
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(STOP_BOUND)
        finally:
            _stop(proc, signal.SIGKILL)
    output = log_path.read_text()
    assert code == 0, output[-3000:]
    assert ("could not pause catalog-annotate/on-demand, train-models/on-demand, export-onnx/on-demand"
            in output), output[-3000:]
    assert left_after(tag, 15) == []
