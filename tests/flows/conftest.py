"""Fixtures of the flow tests: a real Prefect server (one per test module that asks for it)."""

from __future__ import annotations

import pytest

from tests.flows.prefect_server import prefect_server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real Prefect server on a free loopback port with its own SQLite database; yields the
    environment that points clients at it."""
    with prefect_server(tmp_path_factory.mktemp("prefect-home")) as (env, _):
        yield env
