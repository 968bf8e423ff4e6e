"""A real Dask cluster that loses a worker: ``dask scheduler`` and two ``dask worker`` processes
on local ports, ``morphcat annotate --runner dask --dask-address …``, one worker killed with
SIGKILL while shards are in flight. The output must be exactly what an undisturbed run writes:
every row once, byte-identical Parquet per shard. Neither the command nor the workers have a
PREFECT_API_URL: the command's temporary server serves the run, and the workers, which receive
its URL with each task, must never start one of their own (a worker killed would orphan it)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from catalogs.contract import Catalog, write_catalog
from catalogs.synthetic import render_survey
from tests.flows.processes import alive, left_after, tagged

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")]

BIN = Path(sys.executable).parent
N, SHARD = 60, 3  # 20 shards: enough in flight on two single-threaded workers to kill one mid-run


def _files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*.parquet"))
            if ".staging" not in p.parts}


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout} s")


@pytest.fixture
def cluster(tmp_path):
    """A scheduler and two single-threaded worker processes, started without PREFECT_API_URL;
    yields (address, workers, the tag in their environment)."""
    env, tag = tagged({k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
                      | {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_HOME": str(tmp_path / "worker-prefect")})
    info = tmp_path / "scheduler.json"
    procs = [subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0",
                               "--no-dashboard", "--scheduler-file", str(info)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        _wait(lambda: info.is_file() and info.stat().st_size > 0, 60, "the scheduler writing its address")
        address = json.loads(info.read_text())["address"]
        workers = [subprocess.Popen([str(BIN / "dask"), "worker", address, "--nthreads", "1", "--nworkers", "1",
                                     "--no-dashboard", "--name", f"w{i}", "--memory-limit", "0"], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
                   for i in range(2)]
        procs += workers

        def connected() -> bool:
            from distributed import Client

            with Client(address, timeout=10) as client:
                return len(client.scheduler_info()["workers"]) == 2

        _wait(connected, 90, "two workers joining the scheduler")
        yield address, workers, tag
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGKILL if p in procs[1:] else signal.SIGTERM)
        for p in procs:
            p.wait(30)


def test_a_worker_killed_mid_run_changes_nothing_in_the_output(cluster, tiny_bundle, morphcat, tmp_path):
    address, workers, worker_tag = cluster
    root = tmp_path / "survey"
    table = render_survey(root, n=N, seed=41, size=64, mix="balanced", workers=1)
    catalog = write_catalog(Catalog(table, root, "synthetic"), root / "catalog.parquet")
    reference = tmp_path / "reference"
    proc = morphcat("annotate", catalog, "--bundle", tiny_bundle, "--out", reference, "--shard-size", SHARD,
                    "--batch-size", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]

    out = tmp_path / "disturbed"
    env, run_tag = tagged({k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
                          | {"PREFECT_HOME": str(tmp_path / "prefect")})
    run = subprocess.Popen([str(BIN / "morphcat"), "annotate", str(catalog), "--bundle", str(tiny_bundle), "--out",
                            str(out), "--shard-size", str(SHARD), "--batch-size", "2", "--runner", "dask",
                            "--dask-address", address], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    # Once shards are being written, kill a worker: the shards it held are lost with it.
    _wait(lambda: len(list(out.glob("predictions/run=*/shard-*.parquet"))) >= 2 or run.poll() is not None, 300,
          "the first shards of the disturbed run")
    written_before_kill = len(list(out.glob("predictions/run=*/shard-*.parquet")))
    os.killpg(workers[0].pid, signal.SIGKILL)  # the worker and its nanny: a node lost
    stdout, stderr = run.communicate(timeout=600)
    assert run.returncode == 0, stderr[-3000:]
    assert left_after(run_tag, 15) == []  # its temporary server ended with it
    assert not [p for p in alive(worker_tag) if "prefect.server.api.server:create_app" in p]
    assert workers[0].wait(30) == -signal.SIGKILL and workers[1].poll() is None
    assert written_before_kill < N // SHARD  # the kill landed while shards were still to do

    assert _files(out) == _files(reference)  # same files, byte for byte
    ids = pl.read_parquet(out / "predictions" / "**" / "*.parquet")["object_id"]
    assert ids.len() == ids.n_unique() == N
    assert not any((out / ".staging").iterdir())
    assert f"{N} rows → {N} predictions + 0 errors" in stdout
