"""Session fixtures for the export tests: one folder of tiny models, one bundle exported from it
(tests that change a bundle work on a copy)."""

from __future__ import annotations

import shutil

import pytest

from tests.export.tiny_models import write_tiny_models

PARITY_IMAGES = 8


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    return write_tiny_models(tmp_path_factory.mktemp("tiny") / "models")


@pytest.fixture(scope="session")
def tiny_bundle(tiny_models, tmp_path_factory):
    from export.exporter import export_bundle

    out = tmp_path_factory.mktemp("bundle") / "bundle"
    export_bundle(tiny_models, out, synthetic_images=PARITY_IMAGES)
    return out


@pytest.fixture
def bundle_copy(tiny_bundle, tmp_path):
    """A private copy of the tiny bundle, for tests that tamper with it."""
    return shutil.copytree(tiny_bundle, tmp_path / "bundle")
