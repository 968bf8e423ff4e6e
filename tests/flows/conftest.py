"""Fixtures of the flow tests: a real Prefect server (one per test module that asks for it)."""

from __future__ import annotations

import os
import subprocess

import httpx
import pytest

from tests.flows.prefect_server import BIN, _free_port, _stop, _wait


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real Prefect server on a free loopback port with its own SQLite database; yields the
    environment that points clients at it."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_API_URL": f"http://127.0.0.1:{port}/api"}
    log = (home / "server.log").open("w")
    proc = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)

    def healthy():
        try:
            return httpx.get(f"{env['PREFECT_API_URL']}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        _wait(healthy, 120, "prefect server start", proc)
        yield env
    finally:
        _stop(proc)
        log.close()
        errors = [line for line in (home / "server.log").read_text().splitlines() if "| ERROR" in line]
        assert not errors, f"the Prefect server logged errors: {errors[:3]}"
