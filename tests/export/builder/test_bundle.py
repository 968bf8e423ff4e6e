"""The bundle on disk: what bundle.json and each file's metadata record, onnx.checker, and the
runtime's refusals (tampered or missing files, edited manifest, versions, inputs)."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import onnx
import pytest

from catalogs.errors import MorphcatError
from catalogs.outputs import EMBEDDING_DIM
from catalogs.tree import GZ2_TREE
from export.builder.errors import ExportError
from export.builder.exporter import export_bundle, find_models
from export.serve.bundle import BUNDLE_FORMAT, MANIFEST, bundle_id, sha256_file
from export.serve.errors import BundleError
from export.serve.metadata import proto_props, read_facts
from export.serve.runtime import max_supported_opset, open_bundle
from tests.export.tiny_models import CFG, CLASSES, TOKENIZER, write_tiny_models

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
FILES = ("captioner_encoder.onnx", "captioner_step.onnx", "classifier.onnx", "image_models.onnx", "regressor.onnx")


def _manifest(folder):
    return json.loads((folder / MANIFEST).read_text())


def _edit_manifest(folder, change):
    manifest = _manifest(folder)
    change(manifest)
    (folder / MANIFEST).write_text(json.dumps(manifest))


def test_manifest_records_files_facts_training_and_parity(tiny_bundle):
    m = _manifest(tiny_bundle)
    assert m["format"] == BUNDLE_FORMAT and sorted(m["files"]) == list(FILES)
    hashes = {name: sha256_file(tiny_bundle / name) for name in FILES}
    assert {n: r["sha256"] for n, r in m["files"].items()} == hashes
    assert m["bundle_id"] == bundle_id(hashes)
    assert all(m["files"][n]["bytes"] == (tiny_bundle / n).stat().st_size for n in FILES)
    assert m["image"] == CFG.image.__dict__ and m["opset"] == 17
    assert m["requires"]["opset"] == 17
    assert {"tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime"} <= set(m["versions"])
    models = m["models"]
    assert models["classifier"]["class_names"] == list(CLASSES)
    ood = models["classifier"]["ood"]
    assert ood["method"] == "mahalanobis" and ood["threshold"] == 1.0 and ood["quantile"] == 0.99
    assert ood["n_fit"] == 48 and ood["n_calibration"] == 16 and ood["scale"] > 0
    assert "mean" not in ood and "whitening" not in ood  # the arrays live in the graph
    embedding = models["classifier"]["embedding"]
    assert embedding["dim"] == EMBEDDING_DIM and 1 <= embedding["n_components"] <= EMBEDDING_DIM
    assert embedding["n_fit"] == 48 and "components" not in embedding
    assert models["regressor"]["answer_names"] == list(GZ2_TREE.output_names)
    captioner = models["captioner"]
    assert captioner["tokenizer"] == TOKENIZER.to_dict() and captioner["max_len"] == CFG.captioner.max_len
    assert captioner["special_ids"] == {"pad": 0, "bos": 1, "eos": 2, "unk": 3}
    assert captioner["files"] == {n: f"{n}.onnx" for n in ("captioner_encoder", "captioner_step")}
    training = models["classifier"]["training"]
    assert training["best_val_loss"] == {"epoch": 2, "value": 1.0} and training["final_epoch"]["loss"] == 0.8
    parity = m["parity"]
    assert parity["passed"] and parity["n_images"] == 8 and "synthetic" in parity["batch"]
    for kind, model in parity["models"].items():
        for name, figures in model["files"].items():
            for output, f in figures["outputs"].items():
                assert f.get("relative_diff", f["max_abs_diff"]) <= f["atol"], (name, output)
            speed = figures["speed"]
            assert speed["rows"] == 8 and {"ort_rows_per_s", "keras_rows_per_s"} <= set(speed), name  # timer: test_bench
    assert m["merged"] == {"file": "image_models.onnx", "computes": ["classifier", "regressor", "captioner_encoder"],
                           "outputs": ["probs", "cam", "ood_score", "embedding", "votes", "h0", "c0"]}
    merged = parity["merged"]
    for name, figures in merged["files"].items():
        for output, f in figures.items():
            assert f.get("relative_diff", f["max_abs_diff"]) <= f["atol"], (name, output)
    assert merged["class_agreement"] == 1.0 and merged["caption_agreement"] >= 0.99
    assert {"ort_rows_per_s", "separate_files_rows_per_s"} <= set(merged["speed"])
    assert parity["models"]["classifier"]["class_agreement"] == 1.0
    assert parity["models"]["captioner"]["caption_agreement"] >= 0.99


def test_every_file_passes_the_checker_and_carries_its_facts(tiny_bundle):
    m = _manifest(tiny_bundle)
    for kind, entry in m["models"].items():
        for name, file in entry["files"].items():
            proto = onnx.load(tiny_bundle / file)
            onnx.checker.check_model(proto, full_check=True)
            facts = read_facts(proto_props(proto))
            assert facts["model"] == name and facts["kind"] == kind and facts["image"] == m["image"]
            assert facts["spec"] == entry["specs"][name] and facts["versions"] == m["versions"]
            for key in ("class_names", "answer_names", "tokenizer", "max_len"):
                assert facts.get(key) == entry.get(key)
            assert facts["parity"]["outputs"] == m["parity"]["models"][kind]["files"][name]["outputs"]
            spec = entry["specs"][name]
            assert [i.name for i in proto.graph.input] == [t["name"] for t in spec["inputs"]]
            assert [o.name for o in proto.graph.output] == [t["name"] for t in spec["outputs"]]
            for value in (*proto.graph.input, *proto.graph.output):
                assert value.type.tensor_type.shape.dim[0].dim_param == "batch"


def test_a_changed_byte_is_refused(bundle_copy):
    path = bundle_copy / "classifier.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="classifier.onnx does not match its recorded sha256"):
        open_bundle(bundle_copy)


def test_a_missing_file_is_refused(bundle_copy):
    (bundle_copy / "regressor.onnx").unlink()
    with pytest.raises(BundleError, match="regressor.onnx is missing"):
        open_bundle(bundle_copy)


def test_an_edited_manifest_cannot_relabel_a_model(bundle_copy):
    _edit_manifest(bundle_copy, lambda m: m["models"]["classifier"].update(class_names=["x", "y", "z"]))
    with pytest.raises(BundleError, match="classifier: class_names in bundle.json differs from the file"):
        open_bundle(bundle_copy)


@pytest.mark.parametrize("change, needle", [
    (lambda m: m.update(format=1), f"bundle format 1; this morphcat reads format {BUNDLE_FORMAT}"),
    (lambda m: m["requires"].update(onnxruntime="99.0"), "validated on onnxruntime 99.0"),
    (lambda m: m["requires"].update(opset=999), "needs opset 999"),
    (lambda m: m.pop("files"), "lacks files"),
])
def test_versions_the_runtime_cannot_serve_are_refused(bundle_copy, change, needle):
    _edit_manifest(bundle_copy, change)
    with pytest.raises(BundleError, match=needle):
        open_bundle(bundle_copy)


def test_what_the_caller_cannot_use_is_refused_before_any_work(bundle_copy, tmp_path):
    with pytest.raises(BundleError, match="take 32×32 px images, not 64"):
        open_bundle(bundle_copy, expect_image_size=64)
    with pytest.raises(BundleError, match="precision int8 was asked for, but the bundle has no int8 image graph"):
        open_bundle(bundle_copy, precision="int8")
    with pytest.raises(BundleError, match="is not a morphcat bundle"):
        open_bundle(tmp_path / "nowhere")
    (bundle_copy / MANIFEST).write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        open_bundle(bundle_copy)
    assert issubclass(BundleError, MorphcatError)  # the CLI reports it as bad input (exit 2)
    assert max_supported_opset() >= 17


def test_a_subset_of_models_exports_and_says_so(tmp_path):
    models = write_tiny_models(tmp_path / "models", kinds=("regressor",))
    first = export_bundle(models, tmp_path / "a", synthetic_images=4)
    assert sorted(first["models"]) == ["regressor"] and sorted(first["files"]) == ["regressor.onnx"]
    bundle = open_bundle(tmp_path / "a", require=("regressor",))
    assert bundle.has == {"regressor"} and bundle.class_names == []
    out = bundle.infer(np.zeros((2, 32, 32, 3), np.float32))
    assert set(out) == {"votes"} and out["votes"].shape == (2, 37)  # no classifier output: it has none
    with pytest.raises(BundleError, match="it has no captioner, classifier"):
        open_bundle(tmp_path / "a", require=("classifier", "captioner"))
    # Exporting again replaces the bundle; a folder that is not a bundle is never overwritten.
    export_bundle(models, tmp_path / "a", synthetic_images=4)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(ExportError, match="is not a morphcat bundle"):
        export_bundle(models, tmp_path / "mine", synthetic_images=4)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
    assert not list(tmp_path.glob(".*.partial"))


def test_a_models_folder_without_models_is_refused(tmp_path):
    with pytest.raises(ExportError, match="is not a folder of trained models"):
        find_models(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExportError, match="no trained model in"):
        find_models(tmp_path / "empty")
    models = write_tiny_models(tmp_path / "m", kinds=("regressor",))
    shutil.copy(models / "regressor.keras", models / "classifier.keras")
    with pytest.raises(ExportError, match="classifier.keras without the sidecar classifier.json"):
        find_models(models)


@pytest.mark.parametrize("key, change, message", [
    ("ood", None, "has no out-of-distribution reference ('ood'): it was trained by an older morphcat"),
    ("embedding", None, "has no embedding projection ('embedding'): it was trained by an older morphcat"),
    ("embedding", {"mean": [0.0]}, "embedding projection is unusable"),
    ("embedding", {"n_components": 99}, "embedding projection is unusable: n_components 99"),
])
def test_a_classifier_sidecar_without_usable_feature_references_is_refused(tmp_path, key, change, message):
    models = write_tiny_models(tmp_path / "models", kinds=("classifier",))
    path = models / "classifier.json"
    sidecar = json.loads(path.read_text())
    if change is None:
        del sidecar[key]
    else:
        sidecar[key].update(change)
    path.write_text(json.dumps(sidecar))
    with pytest.raises(ExportError, match=re.escape(message)):
        export_bundle(models, tmp_path / "bundle", synthetic_images=4)
    assert not (tmp_path / "bundle").exists()
