"""Fixtures shared by the whole suite."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
PARITY_IMAGES = 8  # images the tiny bundle is parity-checked on


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


@pytest.fixture(scope="session")
def morphcat(prefect_harness):
    """Run the real ``morphcat`` console script in its own process against the test Prefect API,
    as a user would; returns the ``CompletedProcess`` (text stdout/stderr)."""
    import os
    import subprocess
    import sys

    from prefect.settings import PREFECT_API_URL

    exe = str(Path(sys.executable).with_name("morphcat"))
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}

    def run(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
        return subprocess.run([exe, *map(str, args)], capture_output=True, text=True, env=env, timeout=timeout)

    return run


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """A folder of tiny (32 px) models saved exactly as ``morphcat train`` saves them."""
    from tests.export.tiny_models import write_tiny_models

    return write_tiny_models(tmp_path_factory.mktemp("tiny") / "models")


@pytest.fixture(scope="session")
def tiny_bundle(tiny_models, tmp_path_factory):
    """A parity-checked bundle exported from ``tiny_models`` (tests that change it use a copy)."""
    from export.builder.exporter import export_bundle

    out = tmp_path_factory.mktemp("bundle") / "bundle"
    export_bundle(tiny_models, out, synthetic_images=PARITY_IMAGES)
    return out


@pytest.fixture(scope="session")
def galaxy_bundle(morphcat, tmp_path_factory):
    """A classifier really trained on a small synthetic survey (48 px, a few epochs) and exported,
    through the CLI as a user would: a model whose out-of-distribution reference describes
    galaxies, unlike the tiny models'. Returns the bundle folder.

    48 px, not 32: at 32 px a photo keeps too little structure to stand apart from galaxies, and
    the fuzz test's margin (photo and test pattern > 2 × the worst unflagged galaxy) held or
    failed with the training seed (ratio 1.9–4.2 over seeds 1–4); at 48 px it was 3.5–13 over seeds
    1–9, the photo scoring 2.9–10 (2026-12-05)."""
    root = tmp_path_factory.mktemp("galaxy")
    steps = [("synth", root / "survey", "--n", "240", "--seed", "3", "--size", "96", "--mix", "balanced"),
             ("train", root / "survey" / "catalog.parquet", "--out", root / "models", "--models", "classifier",
              "--epochs", "12", "--image-size", "48", "--seed", "3"),
             ("export", root / "models", "--out", root / "bundle", "--catalog", root / "survey" / "catalog.parquet")]
    for step in steps:
        proc = morphcat(*step)
        assert proc.returncode == 0, f"morphcat {step[0]}: {proc.stderr[-3000:]}"
    return root / "bundle"
