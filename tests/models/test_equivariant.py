"""The D4 backbone: its pooled features do not change when the input is rotated by 90° or flipped,
in Keras, after a save/load, and in ONNX; a wrongly tied kernel breaks that (the check can fail)."""

from __future__ import annotations

import numpy as np
import pytest

from catalogs.inputs import ImageSpec
from models import equivariant
from models.backbone import build_backbone
from models.config import BackboneConfig

SPEC = ImageSpec(size=16)
D4 = BackboneConfig(name="d4_cnn", widths=(8, 16))
TRANSFORMS = {
    "rot90": lambda x: np.rot90(x, 1, axes=(1, 2)),
    "rot180": lambda x: np.rot90(x, 2, axes=(1, 2)),
    "rot270": lambda x: np.rot90(x, 3, axes=(1, 2)),
    "flip-rows": lambda x: x[:, ::-1],
    "flip-columns": lambda x: x[:, :, ::-1],
    "transpose": lambda x: np.transpose(x, (0, 2, 1, 3)),
    "anti-transpose": lambda x: np.rot90(np.transpose(x, (0, 2, 1, 3)), 2, axes=(1, 2)),
}


def _images(n: int = 3) -> np.ndarray:
    return np.random.default_rng(0).random((n, SPEC.size, SPEC.size, SPEC.channels), dtype=np.float32)


def _pooled(model, x: np.ndarray) -> np.ndarray:
    return np.asarray(model(np.ascontiguousarray(x), training=False)).mean(axis=(1, 2))


def _randomise_norms(model) -> None:
    """Batch-norm statistics away from their initial values (they are part of the symmetry)."""
    rng = np.random.default_rng(1)
    for w in model.weights:
        if any(k in w.path for k in ("moving_mean", "beta")):
            w.assign(rng.normal(0, 0.2, w.shape).astype(np.float32))
        elif any(k in w.path for k in ("moving_variance", "gamma")):
            w.assign(rng.uniform(0.5, 1.5, w.shape).astype(np.float32))


@pytest.fixture(scope="module")
def d4_backbone():
    model = build_backbone(SPEC, D4)
    _randomise_norms(model)
    return model


def test_the_group_is_closed_and_the_kernel_index_permutes_taps():
    mats = equivariant.group_matrices()
    keys = {m.tobytes() for m in mats}
    assert len(keys) == 8 and all((a @ b).tobytes() in keys for a in mats for b in mats)
    lifting = equivariant.expansion_index(lifting=True)
    assert lifting.shape == (9, 8)
    assert all(sorted(lifting[:, g]) == list(range(9)) for g in range(8))  # each copy: the 9 taps moved
    assert (lifting[4] == 4).all()  # the centre tap never moves
    group = equivariant.expansion_index(lifting=False)
    assert group.shape == (9, 8, 8)
    assert all(sorted(group[:, :, g].ravel()) == list(range(72)) for g in range(8))


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_pooled_features_are_invariant(d4_backbone, name):
    x = _images()
    base = _pooled(d4_backbone, x)
    assert np.abs(base).max() > 1e-3  # not trivially zero
    np.testing.assert_allclose(_pooled(d4_backbone, TRANSFORMS[name](x)), base, atol=1e-5)


def test_the_feature_map_turns_with_the_image(d4_backbone):
    x = _images()
    turned = np.asarray(d4_backbone(np.ascontiguousarray(TRANSFORMS["rot90"](x)), training=False))
    np.testing.assert_allclose(turned, TRANSFORMS["rot90"](np.asarray(d4_backbone(x, training=False))), atol=1e-5)


def test_widths_count_the_copies_and_features_are_pooled(d4_backbone):
    assert d4_backbone.output_shape == (None, SPEC.size // 2, SPEC.size // 2, D4.widths[-1] // 8)
    plain = build_backbone(SPEC, BackboneConfig(name="small_cnn", widths=D4.widths))
    assert d4_backbone.count_params() < plain.count_params() / 4  # one base kernel per 8 filters
    with pytest.raises(ValueError, match="multiples of 8"):
        build_backbone(SPEC, BackboneConfig(name="d4_cnn", widths=(8, 12)))


def test_a_plain_backbone_or_an_untied_kernel_is_not_invariant(monkeypatch):
    x = _images()
    plain = build_backbone(SPEC, BackboneConfig(name="small_cnn", widths=D4.widths))
    assert np.abs(_pooled(plain, TRANSFORMS["rot90"](x)) - _pooled(plain, x)).max() > 1e-3
    # The first layer's 8 copies without their taps moved: 8 equal ordinary convolutions.
    untied = equivariant.expansion_index
    unmoved = lambda lifting: np.repeat(np.arange(9)[:, None], 8, axis=1) if lifting else untied(lifting)  # noqa: E731
    monkeypatch.setattr(equivariant, "expansion_index", unmoved)
    broken = build_backbone(SPEC, D4)
    assert np.abs(_pooled(broken, TRANSFORMS["rot90"](x)) - _pooled(broken, x)).max() > 1e-4


def test_a_one_convolution_first_stage_is_invariant_too():
    lean = build_backbone(SPEC, BackboneConfig(name="d4_cnn", widths=D4.widths, depths=(1, 2)))
    _randomise_norms(lean)
    x = _images()
    for turn in TRANSFORMS.values():
        np.testing.assert_allclose(_pooled(lean, turn(x)), _pooled(lean, x), atol=1e-5)


def test_saved_and_loaded_the_model_is_the_same(d4_backbone, tmp_path):
    import keras

    path = tmp_path / "d4.keras"
    d4_backbone.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True, compile=False)
    x = _images()
    np.testing.assert_allclose(_pooled(loaded, x), _pooled(d4_backbone, x), atol=1e-6)


def test_the_onnx_graph_is_invariant_too(d4_backbone):
    import onnxruntime as ort
    import tensorflow as tf
    import tf2onnx

    signature = [tf.TensorSpec((None, SPEC.size, SPEC.size, SPEC.channels), tf.float32, name="image")]
    proto, _ = tf2onnx.convert.from_function(tf.function(lambda image: d4_backbone(image, training=False)),
                                             input_signature=signature, opset=17)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x = _images()
    run = lambda a: session.run(None, {"image": np.ascontiguousarray(a)})[0].mean(axis=(1, 2))  # noqa: E731
    np.testing.assert_allclose(run(x), _pooled(d4_backbone, x), atol=1e-5)
    np.testing.assert_allclose(run(TRANSFORMS["transpose"](x)), run(x), atol=1e-5)


def test_tied_batch_norm_is_batch_norm_over_all_eight_copies():
    import keras

    x = np.random.default_rng(2).normal(1.0, 2.0, (4, 6, 6, 8 * 3)).astype(np.float32)
    tied = equivariant.TiedBatchNorm(momentum=0.5)
    reference = keras.layers.BatchNormalization(momentum=0.5)
    # The copies of a channel side by side along the width: plain batch norm sees them as one channel.
    side_by_side = x.reshape(4, 6, 6 * 8, 3)
    for training in (True, False):
        got = np.asarray(tied(x, training=training))
        want = np.asarray(reference(side_by_side, training=training)).reshape(x.shape)
        np.testing.assert_allclose(got, want, atol=1e-4)
    np.testing.assert_allclose(tied.moving_variance.numpy(), reference.moving_variance.numpy(), rtol=1e-4)


def test_invariance_survives_a_training_step(d4_backbone):
    import keras

    model = keras.Sequential([build_backbone(SPEC, D4), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    x = _images(8)
    model.fit(x, np.random.default_rng(3).normal(size=(8, 2)), epochs=2, verbose=0)
    base = np.asarray(model(x, training=False))
    np.testing.assert_allclose(np.asarray(model(np.ascontiguousarray(TRANSFORMS["rot90"](x)), training=False)),
                               base, atol=1e-5)
