"""The ``morphcat`` package: docs/api.md's example runs as written, in a process that never
imports TensorFlow, and ``Bundle.predict`` gives the rows a catalog run gives."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _python_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", markdown, flags=re.S | re.M)


def test_the_api_example_runs_without_tensorflow_and_predict_agrees_with_annotate(tmp_path, tiny_bundle):
    blocks = _python_blocks((REPO / "docs" / "api.md").read_text())
    assert len(blocks) == 3
    shutil.copytree(tiny_bundle, tmp_path / "bundle")
    # The example's blocks in one namespace, as a notebook runs its cells; then what it computed.
    check = ("import json, sys\n"
             "assert 'tensorflow' not in sys.modules, 'the example imported TensorFlow'\n"
             "predictions.write_parquet('predicted.parquet')\n"
             "print(json.dumps(summary))\n")
    code = "\n".join(blocks) + "\n" + check
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (summary["catalog_rows"], summary["predictions"] + summary["errors"]) == (12, 12)

    predicted = pl.read_parquet(tmp_path / "predicted.parquet")
    assert predicted["object_id"].to_list()[-1] == "missing" and predicted.height == 5
    missing = predicted.row(4, named=True)
    assert missing["error_type"] == "missing" and missing["error_stage"] == "input"
    assert missing["label_pred"] is None and missing["error_message"]
    found = predicted.head(4)
    assert found["error_type"].is_null().all() and found["run_id"].unique().to_list() == ["predict"]
    annotated = pl.read_parquet(tmp_path / "annotations" / "predictions" / "**" / "*.parquet")
    # Same columns as the predictions table, then the three error columns.
    assert predicted.columns == [*annotated.columns, "error_stage", "error_type", "error_message"]
    # The same galaxies, computed by the same function: the same values.
    same = annotated.filter(pl.col("object_id").is_in(found["object_id"].to_list())).sort("object_id")
    # (ra and dec come from a catalog: an image alone has none.)
    assert found["ra"].is_null().all() and found["dec"].is_null().all()
    columns = [c for c in annotated.columns if c not in ("run_id", "ra", "dec")]
    assert found.sort("object_id").select(columns).equals(same.select(columns))


def test_predict_keeps_the_order_and_refuses_arrays_it_cannot_read(tiny_bundle, tmp_path):
    import morphcat

    bundle = morphcat.open_bundle(tiny_bundle, device="cpu")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (48, 48, 3), np.uint8), tmp_path / "absent.png", rng.integers(0, 256, (48, 48), np.uint8)]
    table = bundle.predict(images)
    assert table["object_id"].to_list() == ["0", str(tmp_path / "absent.png"), "2"]
    assert table["error_type"].to_list() == [None, "missing", None]
    assert table["label_pred"].is_null().to_list() == [False, True, False]
    with pytest.raises(ValueError, match="uint8 of shape"):
        bundle.predict([np.zeros((48, 48, 3), np.float32)])
    with pytest.raises(ValueError, match="2 ids for 1 images"):
        bundle.predict([images[0]], ids=["a", "b"])
