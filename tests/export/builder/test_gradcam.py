"""Grad-CAM written in forward ops (the exported one) against Grad-CAM by autodiff."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from export.builder.convert import tf_signature  # noqa: E402
from export.builder.errors import ExportError  # noqa: E402
from export.builder.gradcam import classifier_with_cam  # noqa: E402
from export.builder.specs import classifier_spec  # noqa: E402
from export.serve.runtime import open_bundle  # noqa: E402
from models.artifacts import load_trained  # noqa: E402
from models.backbone import build_backbone  # noqa: E402
from models.classifier import grad_cam, pooled_features  # noqa: E402
from models.embedding import EmbeddingProjection  # noqa: E402
from models.ood import OodReference  # noqa: E402
from tests.export.tiny_models import CFG, CLASSES, build_tiny, structured_images  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
CAM_ATOL = 1e-4  # of the map's scale


def _assert_same_maps(cam, reference):
    scale = np.abs(reference).max()
    assert scale > 0
    assert np.abs(cam - reference).max() <= CAM_ATOL * scale


def test_forward_op_cam_equals_gradient_tape_for_each_predicted_class():
    trained = build_tiny("classifier")
    model, ood = trained.model, OodReference.from_dict(trained.sidecar["ood"])
    embedding = EmbeddingProjection.from_dict(trained.sidecar["embedding"])
    spec = classifier_spec(CFG.image.size, 3, len(CLASSES), (16, 16), embedding.dim)
    forward = classifier_with_cam(model, tf_signature(spec), ood, embedding)
    x = structured_images(24, seed=3)
    out = forward(x)
    probs = model(x, training=False).numpy()
    assert len(set(probs.argmax(axis=1))) > 1  # the per-image class choice is exercised
    np.testing.assert_allclose(out["probs"].numpy(), probs, atol=1e-6)
    _assert_same_maps(out["cam"].numpy(), grad_cam(model, x))
    # Against the map of another class it must differ: the class really is the predicted one.
    other = (probs.argmax(axis=1) + 1) % len(CLASSES)
    assert not np.allclose(out["cam"].numpy(), grad_cam(model, x, class_index=other), atol=1e-6)
    # The in-graph OOD score is models.ood's on the pooled features.
    np.testing.assert_allclose(out["ood_score"].numpy(), ood.scores(pooled_features(model, x)), rtol=1e-5)
    # So is the embedding models.embedding's: unit rows, the same vectors.
    vectors = out["embedding"].numpy()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors, embedding.project(pooled_features(model, x)), atol=1e-5)


def test_a_feature_reference_of_another_width_is_refused():
    trained = build_tiny("classifier")
    ood = OodReference.from_dict(trained.sidecar["ood"])
    embedding = EmbeddingProjection.from_dict(trained.sidecar["embedding"])
    narrow_ood = OodReference(ood.mean[:-1], ood.whitening[:-1, :-1], ood.scale, ood.quantile, ood.n_fit,
                              ood.n_calibration, ood.shrinkage)
    narrow_embedding = EmbeddingProjection(embedding.mean[:-1], embedding.components[:-1], embedding.n_components,
                                           embedding.explained_variance_ratio, embedding.n_fit)
    spec = classifier_spec(CFG.image.size, 3, len(CLASSES), (16, 16), embedding.dim)
    with pytest.raises(ExportError, match="the OOD reference .* the sidecar belongs to another model"):
        classifier_with_cam(trained.model, tf_signature(spec), narrow_ood, embedding)
    with pytest.raises(ExportError, match="the embedding projection .* the sidecar belongs to another model"):
        classifier_with_cam(trained.model, tf_signature(spec), ood, narrow_embedding)


def test_onnx_classifier_cam_equals_gradient_tape(tiny_bundle, tiny_models):
    model, _ = load_trained(tiny_models, "classifier")
    x = structured_images(16, seed=4)
    out = open_bundle(tiny_bundle, device="cpu").infer(x)
    probs, cam = out["probs"], out["cam"]
    assert cam.shape == (16, 16, 16) and (cam >= 0).all()
    np.testing.assert_array_equal(probs.argmax(axis=1), model(x, training=False).numpy().argmax(axis=1))
    _assert_same_maps(cam, grad_cam(model, x))


def test_a_head_the_closed_form_does_not_hold_for_is_refused():
    image = keras.Input((CFG.image.size, CFG.image.size, 3), name="image")
    x = build_backbone(CFG.image, CFG.backbone, name="backbone")(image)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dense(8, activation="tanh", name="head_hidden")(x)
    x = keras.layers.Dense(3, name="logits")(x)
    model = keras.Model(image, keras.layers.Softmax(name="probs")(x))
    sidecar = build_tiny("classifier").sidecar
    ood, embedding = OodReference.from_dict(sidecar["ood"]), EmbeddingProjection.from_dict(sidecar["embedding"])
    spec = classifier_spec(CFG.image.size, 3, 3, (16, 16), embedding.dim)
    with pytest.raises(ExportError, match="'head_hidden' is not a Dense layer with a ReLU"):
        classifier_with_cam(model, tf_signature(spec), ood, embedding)
    with pytest.raises(ExportError, match="lacks a layer"):
        classifier_with_cam(keras.Model(image, x), tf_signature(spec), ood, embedding)
