"""Fixtures of the export tests (the tiny models and bundle are in tests/conftest.py)."""

from __future__ import annotations

import shutil

import pytest


@pytest.fixture
def bundle_copy(tiny_bundle, tmp_path):
    """A private copy of the tiny bundle, for tests that tamper with it."""
    return shutil.copytree(tiny_bundle, tmp_path / "bundle")
