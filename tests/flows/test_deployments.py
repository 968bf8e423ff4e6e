"""Deployments against a real Prefect server (``prefect server start``, SQLite), as users run
them: ``morphcat serve`` registers them, ``prefect deployment run … --watch`` starts one, and the
server's scheduler fires the cron deployment on its own."""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import httpx
import polars as pl
import pytest

from catalogs.contract import Catalog, write_catalog
from catalogs.synthetic import render_survey
from tests.flows.prefect_server import BIN, _stop, _wait, registered_deployments

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")]

N = 12
DEPLOYMENTS = {"catalog-annotate/on-demand", "catalog-annotate/scheduled", "train-models/on-demand",
               "export-onnx/on-demand"}


@pytest.fixture(scope="module")
def survey(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("deployed") / "survey"
    table = render_survey(root, n=N, seed=21, size=64, mix="balanced", workers=1)
    write_catalog(Catalog(table, root, "synthetic"), root / "catalog.parquet")
    return root / "catalog.parquet"


@pytest.fixture(scope="module")
def served(server, survey, tiny_bundle, tmp_path_factory):
    """``morphcat serve`` with a cron deployment that fires every minute; yields its output folder."""
    scheduled_out = tmp_path_factory.mktemp("scheduled") / "out"
    log_path = scheduled_out.parent / "serve.log"
    log = log_path.open("w")
    proc = subprocess.Popen([str(BIN / "morphcat"), "serve", "--cron", "* * * * *", "--catalog", str(survey),
                             "--bundle", str(tiny_bundle), "--out", str(scheduled_out)],
                            env=server, stdout=log, stderr=subprocess.STDOUT, cwd=scheduled_out.parent)

    try:
        _wait(lambda: registered_deployments(server) >= len(DEPLOYMENTS), 180, "morphcat serve registering its deployments", proc)
        yield scheduled_out
    finally:
        _stop(proc, signal.SIGINT)
        log.close()


def _prefect(env: dict, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "prefect"), *args], env=env, capture_output=True, text=True, timeout=timeout)


def _accounted(out: Path) -> tuple[int, int]:
    pred = pl.read_parquet(out / "predictions" / "**" / "*.parquet")
    err = pl.read_parquet(out / "errors" / "**" / "*.parquet")
    return pred.height, err.height


def test_serve_registers_every_deployment(server, served):
    proc = _prefect(server, "deployment", "ls")
    assert proc.returncode == 0, proc.stderr
    for name in DEPLOYMENTS:
        assert name in proc.stdout


def test_deployment_run_watch_annotates_the_catalog(server, served, survey, tiny_bundle, tmp_path):
    out = tmp_path / "on-demand"
    proc = _prefect(server, "deployment", "run", "catalog-annotate/on-demand", "-p", f"catalog={survey}",
                    "-p", f"bundle={tiny_bundle}", "-p", f"out={out}", "-p", "shard_size=5", "--watch")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Completed" in proc.stdout
    assert _accounted(out) == (N, 0)
    assert len(list((out / "predictions").glob("run=*/shard-*.parquet"))) == 3  # 5 + 5 + 2 rows


def test_a_failed_run_names_the_bad_input(server, served, tiny_bundle, tmp_path):
    proc = _prefect(server, "deployment", "run", "catalog-annotate/on-demand", "-p",
                    f"catalog={tmp_path / 'nowhere.parquet'}", "-p", f"bundle={tiny_bundle}", "-p",
                    f"out={tmp_path / 'out'}", "--watch")
    assert proc.returncode != 0
    assert "Failed" in proc.stdout
    run_id = re.search(r"UUID: ([0-9a-f-]{36})", proc.stdout).group(1)
    state = httpx.get(f"{server['PREFECT_API_URL']}/flow_runs/{run_id}", timeout=5).json()["state"]
    assert state["type"] == "FAILED"
    assert f"SourceError: catalog file {tmp_path / 'nowhere.parquet'} does not exist" in state["message"]
    assert not (tmp_path / "out").exists()


def test_the_server_schedules_and_runs_the_cron_deployment(server, served):
    api = server["PREFECT_API_URL"]

    def runs(state: str) -> list[dict]:
        body = {"flow_runs": {"state": {"type": {"any_": [state]}}},
                "deployments": {"name": {"any_": ["scheduled"]}}}
        return httpx.post(f"{api}/flow_runs/filter", json=body, timeout=5).json()

    scheduled = _wait(lambda: runs("SCHEDULED"), 60, "the scheduler creating runs of catalog-annotate/scheduled")
    assert scheduled[0]["parameters"]["out"] == str(served)
    _wait(lambda: runs("COMPLETED"), 150, "a scheduled run completing")
    assert _accounted(served) == (N, 0)
