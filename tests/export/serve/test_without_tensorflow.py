"""The serve side needs no TensorFlow: ``morphcat annotate`` runs in a process where importing
``tensorflow``, ``keras``, ``tf2onnx`` or ``onnx`` fails, as on an annotation-only install
(``pip install morphcat``, without the ``train`` extra)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from catalogs.contract import Catalog, write_catalog
from catalogs.synthetic import render_survey

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")]

BUILD_ONLY = ("tensorflow", "keras", "tf2onnx", "onnx")
STUB = """import os
with open(os.environ["MORPHCAT_IMPORT_LOG"], "a") as log:
    log.write({name!r} + "\\n")
raise ImportError({name!r} + " is not installed here (an annotation-only install)")
"""


def _stubbed_env(tmp_path: Path) -> tuple[dict, Path]:
    """An environment whose first import path holds a package per build-only library that
    records the attempt and fails like a missing package."""
    from prefect.settings import PREFECT_API_URL

    stubs, log = tmp_path / "stubs", tmp_path / "imports.log"
    for name in BUILD_ONLY:
        (stubs / name).mkdir(parents=True)
        (stubs / name / "__init__.py").write_text(STUB.format(name=name))
    path = os.pathsep.join(p for p in (str(stubs), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "MORPHCAT_IMPORT_LOG": str(log),
            "PREFECT_API_URL": PREFECT_API_URL.value()}, log


def test_annotate_runs_where_tensorflow_cannot_be_imported(tmp_path, tiny_bundle, prefect_harness):
    env, log = _stubbed_env(tmp_path)
    probe = subprocess.run([sys.executable, "-c", "import tensorflow"], env=env, capture_output=True, text=True)
    assert probe.returncode != 0 and "not installed here" in probe.stderr  # the stubs do bite
    log.unlink()
    root = tmp_path / "survey"
    table = render_survey(root, n=7, seed=4, size=64, mix="balanced", workers=1)
    write_catalog(Catalog(table, root, "synthetic"), root / "catalog.parquet")
    exe = str(Path(sys.executable).with_name("morphcat"))
    proc = subprocess.run([exe, "annotate", str(root / "catalog.parquet"), "--bundle", str(tiny_bundle),
                           "--out", str(tmp_path / "out"), "--shard-size", "4", "--device", "cpu"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not log.exists(), f"imported on the serve side: {log.read_text()}"
    predictions = pl.read_parquet(tmp_path / "out" / "predictions" / "**" / "*.parquet")
    assert sorted(predictions["object_id"]) == sorted(table.column("object_id").to_pylist())
    assert predictions["caption"].null_count() == 0 and predictions["p_spiral"].null_count() == 0
