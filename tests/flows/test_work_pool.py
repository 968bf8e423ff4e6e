"""``prefect.yaml`` on a real process work pool, as a data centre runs morphcat: a real Prefect
server, ``prefect work-pool create``, ``prefect deploy --all``, ``prefect worker start``, then
``prefect deployment run 'catalog-annotate/on-demand' … --watch`` and the Parquet it wrote."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import polars as pl
import pytest

from catalogs.contract import Catalog, write_catalog
from catalogs.synthetic import render_survey
from tests.flows.prefect_server import BIN, _stop

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")]

REPO = Path(__file__).resolve().parents[2]
POOL = "morphcat"
N = 9


def _prefect(env: dict, *args: str, cwd: Path = REPO, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "prefect"), "--no-prompt", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def test_the_deployments_of_prefect_yaml_run_on_a_process_work_pool(server, tiny_bundle, tmp_path):
    root = tmp_path / "survey"
    table = render_survey(root, n=N, seed=51, size=64, mix="balanced", workers=1)
    catalog = write_catalog(Catalog(table, root, "synthetic"), root / "catalog.parquet")
    env = {**server, "MORPHCAT_NIGHTLY_CATALOG": str(catalog), "MORPHCAT_NIGHTLY_BUNDLE": str(tiny_bundle),
           "MORPHCAT_NIGHTLY_OUT": str(tmp_path / "nightly")}
    created = _prefect(env, "work-pool", "create", POOL, "--type", "process")
    assert created.returncode == 0, created.stdout + created.stderr
    deployed = _prefect(env, "deploy", "--all")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    found = httpx.post(f"{env['PREFECT_API_URL']}/deployments/filter", json={}, timeout=5).json()
    names = {(d["name"], d["work_pool_name"]) for d in found}
    assert names == {("on-demand", POOL), ("scheduled", POOL)}  # on-demand of three flows, one nightly
    assert len(found) == 4
    nightly = next(d for d in found if d["name"] == "scheduled")
    assert nightly["parameters"]["catalog"] == str(catalog) and nightly["schedules"][0]["schedule"]["cron"] == "0 3 * * *"

    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", POOL], env=env, cwd=tmp_path,
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        out = tmp_path / "out"
        run = _prefect(env, "deployment", "run", "catalog-annotate/on-demand", "-p", f"catalog={catalog}",
                       "-p", f"bundle={tiny_bundle}", "-p", f"out={out}", "-p", "shard_size=4", "--watch",
                       "--watch-timeout", "500", cwd=tmp_path)
        assert run.returncode == 0, run.stdout + run.stderr + (tmp_path / "worker.log").read_text()[-3000:]
        assert "Completed" in run.stdout
        predictions = pl.read_parquet(out / "predictions" / "**" / "*.parquet")
        assert sorted(predictions["object_id"]) == sorted(table.column("object_id").to_pylist())
        assert len(list((out / "predictions").glob("run=*/shard-*.parquet"))) == 3  # 4 + 4 + 1 rows
    finally:
        _stop(worker)
        log.close()
