"""``--int8``: int8 copies beside the fp32 files, compared with them, opened on request only."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from export.build.exporter import export_bundle
from export.build.images import synthetic_batch
from export.serve.metadata import proto_props, read_facts, set_facts
from export.serve.runtime import open_bundle
from tests.export.tiny_models import structured_images

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _without_facts(proto):
    set_facts(proto, {})
    return proto


def test_int8_files_are_compared_with_fp32_and_opened_on_request(tiny_models, tmp_path):
    manifest = export_bundle(tiny_models, tmp_path / "b", synthetic_images=8, int8=True)
    int8 = manifest["int8"]
    assert "static QDQ" in int8["method"] and "dynamic" in int8["method"]
    for kind in ("classifier", "regressor", "captioner"):
        c = int8[kind]
        entry = manifest["models"][kind]
        # The figures are what they say: the int8 graphs' bytes (before the facts, these figures
        # among them, are written into the files), the ratio of the two rates.
        assert c["bytes_int8"] == sum(_without_facts(onnx.load(tmp_path / "b" / f)).ByteSize()
                                      for f in entry["int8_files"].values())
        assert c["speedup"] == pytest.approx(c["images_per_s_int8"] / c["images_per_s_fp32"], abs=0.006)
        for name, file in entry["int8_files"].items():
            assert file == f"{name}.int8.onnx" and file in manifest["files"]
            proto = onnx.load(tmp_path / "b" / file)
            onnx.checker.check_model(proto)
            facts = read_facts(proto_props(proto))
            assert facts["precision"] == "int8" and facts["int8"] == c
    assert json.loads((tmp_path / "b" / "bundle.json").read_text())["int8"] == int8

    # The agreement figures are recomputed from the two precisions on the export's own parity batch.
    fp32, quantized = open_bundle(tmp_path / "b"), open_bundle(tmp_path / "b", precision="int8")
    batch = synthetic_batch(fp32.image, 8).images
    out8, out = quantized.infer(batch), fp32.infer(batch)
    probs8, probs = out8["probs"], out["probs"]
    assert int8["classifier"]["class_agreement"] == np.mean(probs8.argmax(1) == probs.argmax(1))
    assert int8["classifier"]["max_prob_diff"] == pytest.approx(np.abs(probs8 - probs).max(), rel=1e-5)
    votes8, votes = out8["votes"], out["votes"]
    assert int8["regressor"]["max_vote_diff"] == pytest.approx(np.abs(votes8 - votes).max(), rel=1e-5)
    assert int8["regressor"]["vote_rmse_vs_fp32"] == pytest.approx(np.sqrt(np.mean((votes8 - votes) ** 2)), rel=1e-5)
    same = np.mean([a == b for a, b in zip(quantized.captions(batch), fp32.captions(batch))])
    assert int8["captioner"]["caption_agreement"] == same

    x = structured_images(4, seed=2)
    assert fp32.precision == "fp32" and quantized.precision == "int8"
    out8, out = quantized.infer(x), fp32.infer(x)
    probs8, cam8, probs, cam = out8["probs"], out8["cam"], out["probs"], out["cam"]
    assert probs8.shape == probs.shape and cam8.shape == cam.shape
    assert not np.array_equal(probs8, probs)  # really the other file
    np.testing.assert_allclose(probs8.sum(axis=1), 1.0, atol=1e-5)
    assert len(quantized.captions(x)) == len(fp32.captions(x)) == len(x)
