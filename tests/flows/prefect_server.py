"""What the deployment tests share: the Prefect executables, a free loopback port, waiting for a
condition, stopping a process, a real Prefect server (the ``server`` fixture in ``conftest.py``
runs one per test module)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: the process exited with {proc.returncode}")
        value = predicate()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"{what}: not within {timeout} s")


def _stop(proc: subprocess.Popen, sig=signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def registered_deployments(env: dict[str, str]) -> int:
    """How many deployments the server at ``env``'s PREFECT_API_URL holds; 0 while it is too busy
    to answer within 5 s (registering a cron deployment schedules its runs): callers poll again."""
    try:
        return len(httpx.post(f"{env['PREFECT_API_URL']}/deployments/filter", json={}, timeout=5).json())
    except httpx.TimeoutException:
        return 0


@contextmanager
def prefect_server(home: Path) -> Iterator[tuple[dict[str, str], subprocess.Popen]]:
    """``prefect server start`` on a free loopback port with its own SQLite database in ``home``;
    yields the environment that points clients at it and the server's process (stopped, if the
    test has not, on the way out). Asserts that the server logged no error."""
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
        yield env, proc
    finally:
        _stop(proc)
        log.close()
        errors = [line for line in (home / "server.log").read_text().splitlines() if "| ERROR" in line]
        assert not errors, f"the Prefect server logged errors: {errors[:3]}"
