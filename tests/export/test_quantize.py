"""``--int8``: int8 copies beside the fp32 files, compared with them, opened on request only."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from export.exporter import export_bundle
from export.metadata import proto_props, read_facts
from export.runtime import open_bundle
from tests.export.tiny_models import structured_images

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def test_int8_files_are_compared_with_fp32_and_opened_on_request(tiny_models, tmp_path):
    manifest = export_bundle(tiny_models, tmp_path / "b", synthetic_images=8, int8=True)
    int8 = manifest["int8"]
    assert "static QDQ" in int8["method"] and "dynamic" in int8["method"]
    for kind in ("classifier", "regressor", "captioner"):
        c = int8[kind]
        assert c["bytes_int8"] > 0 and c["images_per_s_int8"] > 0 and c["speedup"] > 0
        entry = manifest["models"][kind]
        for name, file in entry["int8_files"].items():
            assert file == f"{name}.int8.onnx" and file in manifest["files"]
            proto = onnx.load(tmp_path / "b" / file)
            onnx.checker.check_model(proto)
            facts = read_facts(proto_props(proto))
            assert facts["precision"] == "int8" and facts["int8"] == c
    assert 0.0 <= int8["classifier"]["class_agreement"] <= 1.0
    assert 0.0 <= int8["captioner"]["caption_agreement"] <= 1.0
    assert int8["regressor"]["max_vote_diff"] >= int8["regressor"]["vote_rmse_vs_fp32"] >= 0
    assert json.loads((tmp_path / "b" / "bundle.json").read_text())["int8"] == int8

    x = structured_images(4, seed=2)
    fp32, quantized = open_bundle(tmp_path / "b"), open_bundle(tmp_path / "b", precision="int8")
    assert fp32.precision == "fp32" and quantized.precision == "int8"
    probs8, cam8 = quantized.classify(x)
    probs, cam = fp32.classify(x)
    assert probs8.shape == probs.shape and cam8.shape == cam.shape
    assert not np.array_equal(probs8, probs)  # really the other file
    np.testing.assert_allclose(probs8.sum(axis=1), 1.0, atol=1e-5)
    assert quantized.caption_ids(x).shape == fp32.caption_ids(x).shape
