"""Fixtures shared by the whole suite."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real GZ2 data beside the repository (see ../shared/data/README.md); CI has it."""
    if not (SHARED_DATA / "gz2-sample" / "gz2_sample_labels.csv").is_file():
        pytest.skip(f"needs the real GZ2 sample in {SHARED_DATA} (absent on this machine)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def prefect_harness():
    """A throw-away Prefect API for flow tests (starts once per session, ~15 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
