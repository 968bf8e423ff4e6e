"""``--int8``: the merged image graph's int8 copy, its agreement with fp32, the gate, and where
each precision is served."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest

from catalogs import timing
from catalogs.tree import GZ2_TREE
from export.builder import quantize, variants
from export.builder.exporter import export_bundle
from export.builder.images import synthetic_batch
from export.serve import runtime
from export.serve.bundle import INT8_NAME
from export.serve.errors import BundleError
from export.serve.metadata import proto_props, read_facts
from export.serve.runtime import open_bundle
from tests.export.tiny_models import structured_images

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

LENIENT = {k: (op, 0.0 if op == ">=" else 1.0) for k, (op, _) in quantize.GATE.items()}
IMPOSSIBLE = {**quantize.GATE, "class_agreement": (">=", 1.01)}


@pytest.mark.parametrize("figures, failed", [
    ({"class_agreement": 1.0, "caption_agreement": 0.98, "cam_peak_agreement": 0.96, "vote_rmse_vs_fp32": 0.004}, []),
    ({"class_agreement": 0.995, "caption_agreement": 0.97, "cam_peak_agreement": 0.95, "vote_rmse_vs_fp32": 0.005}, []),
    ({"class_agreement": 0.99, "caption_agreement": 0.98, "cam_peak_agreement": 0.96, "vote_rmse_vs_fp32": 0.004},
     ["class_agreement"]),
    ({"class_agreement": 1.0, "caption_agreement": 0.96, "cam_peak_agreement": 0.94, "vote_rmse_vs_fp32": 0.006},
     ["caption_agreement", "cam_peak_agreement", "vote_rmse_vs_fp32"]),
    ({"class_agreement": 1.0, "cam_peak_agreement": 1.0}, []),  # no regressor, no captions: not judged
])
def test_the_gate_judges_each_figure_against_its_threshold(figures, failed):
    verdict = variants.judge(figures, quantize.GATE)
    assert [f.split()[0] for f in verdict["failed"]] == failed
    assert verdict["passed"] is (not failed)


def test_agreement_figures_are_counted_per_image():
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.5, 0.5], [0.2, 0.8]])
    cam = np.zeros((4, 2, 2))
    cam[:, 0, 0] = 1.0
    cam8 = cam.copy()
    cam8[1, 1, 1] = 2.0  # image 1's hottest cell moves
    rng = np.random.default_rng(0)
    fractions = rng.dirichlet(np.ones(2), (4, 1)).reshape(4, 2)  # t01 smooth / features, the rest 0
    per_q = np.zeros((4, len(GZ2_TREE)))
    per_q[:, :2], per_q[:, 2] = fractions * 0.98, 0.02
    per_q8 = per_q.copy()
    per_q8[0, :2] += [0.01, -0.01]  # one galaxy's first answer moves by 0.01
    votes, votes8 = GZ2_TREE.cumulative(per_q), GZ2_TREE.cumulative(per_q8)
    fp32 = {"probs": probs, "cam": cam, "votes": votes, "words": ["a", "b", "c", "d"]}
    int8 = {"probs": probs[[0, 1, 3, 3]], "cam": cam8, "votes": votes8, "words": ["a", "b", "c", "x"]}
    got = variants.agreement(fp32, int8, captions=lambda out: out["words"])
    assert got["class_agreement"] == 0.75  # row 2 changes class
    assert got["cam_peak_agreement"] == 0.75
    # Gated on the per-question fractions the predictions table holds, not the cumulative answers.
    assert got["vote_rmse_vs_fp32"] == pytest.approx(np.sqrt(2 * 0.01**2 / per_q.size))
    assert got["cumulative_vote_rmse_vs_fp32"] == pytest.approx(np.sqrt(np.mean((votes - votes8) ** 2)))
    assert got["caption_agreement"] == 0.75
    assert "caption_agreement" not in variants.agreement(fp32, int8, captions=None)


def _export(tiny_models, out, monkeypatch, gate):
    monkeypatch.setattr(quantize, "GATE", gate)
    return export_bundle(tiny_models, out, synthetic_images=8, int8=True)


@pytest.fixture(scope="module")
def int8_bundles(tiny_models, tmp_path_factory):
    """Two int8 exports of the tiny models: one whose gate passes by construction, one whose
    gate cannot pass (the real gate is about trained models, not 32 px test models)."""
    root = tmp_path_factory.mktemp("int8")
    with pytest.MonkeyPatch.context() as mp:
        passed = _export(tiny_models, root / "passed", mp, LENIENT)
        failed = _export(tiny_models, root / "failed", mp, IMPOSSIBLE)
    return root / "passed", passed, root / "failed", failed


def test_the_int8_graph_is_written_with_its_figures_and_verdict(int8_bundles):
    path, manifest, _, failed = int8_bundles
    int8 = manifest["int8"]
    assert int8["file"] == f"{INT8_NAME}.onnx" and int8["file"] in manifest["files"]
    assert "static QDQ" in int8["method"] and int8["calibration"].startswith("synthetic survey galaxies (seed 1")
    assert int8["gate"]["passed"] and not failed["int8"]["gate"]["passed"]
    assert failed["int8"]["gate"]["failed"][0].startswith("class_agreement")
    proto = onnx.load(path / int8["file"])
    onnx.checker.check_model(proto)
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in proto.graph.node}
    facts = read_facts(proto_props(proto))
    assert facts["precision"] == "int8" and facts["gate"] == int8["gate"]
    assert facts["computes"] == manifest["merged"]["computes"]
    assert json.loads((path / "bundle.json").read_text())["int8"] == int8
    c = int8["comparison"]
    assert c["speedup"] == pytest.approx(c["images_per_s_int8"] / c["images_per_s_fp32"], abs=0.006)

    # The figures are recomputed from the two graphs on the export's own parity batch.
    fp32, served = open_bundle(path, precision="fp32"), open_bundle(path, precision="int8")
    assert (fp32.precision, served.precision) == ("fp32", "int8")
    batch = synthetic_batch(fp32.image, 8).images
    out, out8 = fp32.infer(batch), served.infer(batch)
    assert c["class_agreement"] == np.mean(out["probs"].argmax(1) == out8["probs"].argmax(1))
    per_q, per_q8 = (np.nan_to_num(GZ2_TREE.per_question(o["votes"]), nan=0.0) for o in (out, out8))
    assert c["vote_rmse_vs_fp32"] == pytest.approx(np.sqrt(np.mean((per_q - per_q8) ** 2)), rel=1e-5)
    assert c["cam_peak_agreement"] == np.mean(variants.cam_peaks(out["cam"]) == variants.cam_peaks(out8["cam"]))
    assert not np.array_equal(out["probs"], out8["probs"])  # really the other graph
    x = structured_images(4, seed=2)
    np.testing.assert_allclose(served.infer(x)["probs"].sum(axis=1), 1.0, atol=1e-5)


def test_int8_is_served_only_where_the_gate_passed_and_it_is_faster(int8_bundles, tiny_bundle, monkeypatch):
    passed, _, failed, _ = int8_bundles
    monkeypatch.setattr(runtime, "probe_speedup", lambda *a: 2.0)
    served = open_bundle(passed, device="cpu")
    assert served.precision == "int8" and "×2.00" in served.precision_reason
    monkeypatch.setattr(runtime, "probe_speedup", lambda *a: 1.0)
    slow = open_bundle(passed, device="cpu")
    assert slow.precision == "fp32" and "only ×1.00" in slow.precision_reason
    refused = open_bundle(failed, device="cpu")
    assert refused.precision == "fp32" and "failed the agreement gate" in refused.precision_reason
    plain = open_bundle(tiny_bundle, device="cpu")
    assert plain.precision == "fp32" and "no int8 image graph" in plain.precision_reason
    with pytest.raises(BundleError, match="failed the agreement gate at export: class_agreement"):
        open_bundle(failed, precision="int8")
    with pytest.raises(BundleError, match="no int8 image graph"):
        open_bundle(tiny_bundle, precision="int8")


class _TimedSession:
    """Stands in for an onnxruntime session: each run advances a shared clock by its cost."""

    def __init__(self, clock: list, cost: float):
        self.clock, self.cost, self.shapes = clock, cost, []

    def run(self, _outputs, feeds):
        self.shapes.append(feeds["image"].shape)
        self.clock[0] += self.cost


def test_the_speed_probe_compares_the_best_runs_of_both_graphs(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock[0])
    fp32, int8 = _TimedSession(clock, 0.3), _TimedSession(clock, 0.1)
    spec = runtime.ImageSpec(size=32)
    assert runtime.probe_speedup(fp32, int8, spec) == pytest.approx(3.0)
    assert fp32.shapes == int8.shapes == [(runtime.PROBE_IMAGES, 32, 32, 3)] * (1 + runtime.PROBE_RUNS)


def test_a_bundle_opened_for_a_run_is_reused_by_its_shards(int8_bundles, tiny_bundle, monkeypatch):
    from export.serve.shard import opened_bundle

    monkeypatch.setattr(runtime, "probe_speedup", lambda *a: 2.0)
    for path, chosen in ((int8_bundles[0], "int8"), (tiny_bundle, "fp32")):
        planner = opened_bundle(str(path), "cpu", 1, None, "auto")
        assert planner.precision == chosen
        assert opened_bundle(str(path), "cpu", 1, None, chosen) is planner  # what the shards ask for


def test_an_edited_gate_in_bundle_json_is_refused(int8_bundles, tmp_path):
    copy = tmp_path / "b"
    shutil.copytree(int8_bundles[2], copy)
    manifest = json.loads((copy / "bundle.json").read_text())
    manifest["int8"]["gate"] = {**manifest["int8"]["gate"], "passed": True, "failed": []}
    (copy / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="gate in bundle.json differ"):
        open_bundle(copy, precision="int8")
