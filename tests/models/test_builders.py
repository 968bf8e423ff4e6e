"""Keras model builders: shapes, layer names, the tree layer, Grad-CAM, the captioner split,
save/load round trips and ONNX convertibility. Tiny configs so each test takes seconds."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from catalogs.inputs import ImageSpec  # noqa: E402
from catalogs.tokenizer import BOS_ID, EOS_ID, PAD_ID, Tokenizer  # noqa: E402
from models.backbone import FEATURES_LAYER, build_backbone  # noqa: E402
from models.captioner import (  # noqa: E402
    MaskedAccuracy,
    build_captioner,
    captioner_from_train,
    greedy_decode,
    greedy_decode_ids,
    masked_accuracy,
    masked_loss,
    teacher_forcing_pairs,
)
from models.calibration import softmax  # noqa: E402
from models.classifier import features_layer, grad_cam, grad_cam_model, logits  # noqa: E402
from models.config import BackboneConfig, CaptionerConfig, HeadConfig, ModelConfig
from models.morphology import build_morphology  # noqa: E402
from models.regressor import DecisionTreeLayer  # noqa: E402
from tests.models.test_tree_layer import assert_obeys_tree  # noqa: E402

# Keras' TF backend calls np.array(tensor) internally; NumPy 2 warns about its __array__ signature.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

CFG = ModelConfig(
    image=ImageSpec(size=32),
    backbone=BackboneConfig(name="small_cnn", widths=(8, 16)),
    head=HeadConfig(hidden=16, dropout=0.3),
    captioner=CaptionerConfig(embed_dim=8, units=16, max_len=12),
)
CLASSES = ("elliptical", "spiral", "edge_on")
VOCAB = 20
UNITS = CFG.captioner.units


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 32, 32, 3), dtype=np.float32)


def _randomise(model: keras.Model, seed: int = 0) -> None:
    """Give every weight (incl. biases and BN statistics) non-trivial values."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        shape = tuple(w.shape)
        if "variance" in w.path:
            w.assign(rng.uniform(0.5, 1.5, shape).astype(np.float32))
        else:
            w.assign(rng.normal(0, 0.3, shape).astype(np.float32))


@pytest.fixture(scope="module")
def classifier():
    model = build_morphology(CFG, CLASSES).classifier
    _randomise(model, 1)
    return model


@pytest.fixture(scope="module")
def regressor():
    return build_morphology(CFG, CLASSES).regressor  # randomly initialised, as built


@pytest.fixture(scope="module")
def captioner():
    models = build_captioner(CFG, VOCAB)
    _randomise(models.train, 2)
    return models


def _token_batch(seed: int = 3) -> np.ndarray:
    """(4, 9) teacher-forcing inputs: <bos> + words, then <pad> (rows of different length)."""
    rng = np.random.default_rng(seed)
    rows = np.zeros((4, 9), dtype=np.int32)
    for r, n in enumerate((8, 5, 3, 1)):
        rows[r, 0] = BOS_ID
        rows[r, 1 : n + 1 if n < 9 else 9] = rng.integers(4, VOCAB, size=min(n, 8))
    return rows


# -- backbone ----------------------------------------------------------------------------------


def test_small_cnn_backbone_shape_and_last_layer():
    backbone = build_backbone(CFG.image, CFG.backbone)
    assert backbone.name == "backbone"
    assert backbone.output_shape == (None, 16, 16, 16)  # one max-pool for two stages
    last = backbone.layers[-1]
    assert last.name == FEATURES_LAYER and isinstance(last, keras.layers.ReLU)
    convs = [l for l in backbone.layers if isinstance(l, keras.layers.Conv2D)]
    assert len(convs) == 4 and all(not c.use_bias for c in convs)
    assert [c.kernel_size for c in convs] == [(3, 3)] * 4
    assert sum(isinstance(l, keras.layers.BatchNormalization) for l in backbone.layers) == 4
    assert sum(isinstance(l, keras.layers.MaxPooling2D) for l in backbone.layers) == 1
    deep = build_backbone(CFG.image, BackboneConfig(name="small_cnn", widths=(4, 4, 4, 8)))
    assert deep.output_shape == (None, 4, 4, 8)


@pytest.mark.parametrize("name, widths", [("small_cnn", (4, 8)), ("d4_cnn", (8, 16))])
@pytest.mark.parametrize("depths, convs", [(None, 4), ((1, 2), 3), ((1, 1), 2), ((3, 1), 4)])
def test_depths_give_the_convolutions_of_each_stage(name, widths, depths, convs):
    backbone = build_backbone(CFG.image, BackboneConfig(name=name, widths=widths, depths=depths))
    names = [l.name for l in backbone.layers if l.name.startswith("stage") and l.name[-1].isdigit()]
    assert len(names) == convs
    first = 2 if depths is None else depths[0]
    assert [n for n in names if n.startswith("stage1_")] == [f"stage1_conv{i}" for i in range(1, first + 1)]
    assert backbone.layers[-1].name == FEATURES_LAYER


@pytest.mark.parametrize("depths", [(2,), (2, 0), (1, 2, 2)])
def test_depths_must_give_every_stage_at_least_one_convolution(depths):
    with pytest.raises(ValueError, match="depths gives the convolutions of each of the 2 stages"):
        build_backbone(CFG.image, BackboneConfig(name="small_cnn", widths=(4, 8), depths=depths))


def test_backbone_rejects_unknown_name_and_missing_weights(tmp_path):
    with pytest.raises(ValueError, match="unknown backbone 'NoSuchNet'"):
        build_backbone(CFG.image, BackboneConfig(name="NoSuchNet"))
    with pytest.raises(ValueError, match="unknown backbone 'resnet'"):  # a module, not a constructor
        build_backbone(CFG.image, BackboneConfig(name="resnet"))
    missing = tmp_path / "absent.weights.h5"
    with pytest.raises(FileNotFoundError, match="absent.weights.h5"):
        build_backbone(CFG.image, BackboneConfig(name="MobileNetV2", weights=str(missing)))
    with pytest.raises(ValueError, match=".weights.h5"):
        build_backbone(CFG.image, BackboneConfig(name="MobileNetV2", weights=str(tmp_path / "w.h5")))


def test_application_backbone_loads_local_weights(tmp_path):
    app = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3))
    _randomise(app, 4)
    path = tmp_path / "mobilenet.weights.h5"
    app.save_weights(str(path))
    backbone = build_backbone(CFG.image, BackboneConfig(name="MobileNetV2", weights=str(path)))
    assert backbone.layers[-1].name == FEATURES_LAYER
    x = _images(2)
    np.testing.assert_allclose(
        backbone(x, training=False).numpy(), np.maximum(app(x, training=False).numpy(), 0), atol=1e-5
    )


# -- classifier --------------------------------------------------------------------------------


def test_classifier_shapes_names_and_probabilities(classifier):
    assert classifier.input.name == "image" or classifier.inputs[0].name == "image"
    for name in ("backbone", "gap", "head_hidden", "head_dropout", "logits", "probs"):
        classifier.get_layer(name)
    assert classifier.layers[-1].name == "probs"
    assert classifier.get_layer("head_hidden").activation is keras.activations.relu
    assert features_layer(classifier).name == FEATURES_LAYER
    x = _images(5)
    probs = classifier.predict(x, verbose=0)
    assert probs.shape == (5, len(CLASSES))
    # The last layer is exactly a softmax over the logits layer (no other transform in between).
    np.testing.assert_allclose(probs, softmax(logits(classifier, x)), atol=1e-5)
    five = build_morphology(CFG, ["a", "b", "c", "d", "e"]).classifier
    assert five.output_shape == (None, 5)
    assert five.get_layer("logits").units == 5


def test_classifier_rejects_bad_class_names():
    with pytest.raises(ValueError, match="at least 2"):
        build_morphology(CFG, ["only"])
    with pytest.raises(ValueError, match="duplicate"):
        build_morphology(CFG, ["a", "a"])
    with pytest.raises(TypeError):
        build_morphology(CFG, "ab")


def test_grad_cam_model_shares_layers(classifier):
    model = grad_cam_model(classifier)
    x = _images(3)
    features, logits = model(x, training=False)
    assert tuple(features.shape) == (3, 16, 16, 16)
    probs = tf.nn.softmax(logits).numpy()
    np.testing.assert_allclose(probs, classifier(x, training=False).numpy(), atol=1e-6)


def test_grad_cam_shape_and_sign(classifier):
    x = _images(4, seed=5)
    cam = grad_cam(classifier, x)
    assert cam.shape == (4, 16, 16) and cam.dtype == np.float32
    assert (cam >= 0).all() and cam.max() > 0
    # Rows are independent: one image alone gives the same map as in the batch.
    np.testing.assert_allclose(grad_cam(classifier, x[1:2])[0], cam[1], rtol=1e-5, atol=1e-7)
    others = [grad_cam(classifier, x, class_index=c) for c in range(len(CLASSES))]
    assert not np.allclose(others[0], others[1])
    with pytest.raises(ValueError, match="out of range"):
        grad_cam(classifier, x, class_index=len(CLASSES))


def test_grad_cam_matches_manual_computation():
    """Known head weights: α = W1 · (mask(z1 > 0) ⊙ W2[:, c]) / (h·w), cam = ReLU(Σ_k α_k A_k)."""
    model = build_morphology(CFG, CLASSES).classifier
    _randomise(model.get_layer("backbone"), 6)
    k, hidden = 16, CFG.head.hidden
    w1 = np.linspace(-1.0, 1.0, k * hidden, dtype=np.float32).reshape(k, hidden)
    w1 = w1 * np.where(np.arange(hidden) % 3 == 0, -1.0, 1.0).astype(np.float32)
    b1 = np.linspace(-0.2, 0.2, hidden, dtype=np.float32)
    w2 = np.cos(np.arange(hidden * 3, dtype=np.float32)).reshape(hidden, 3)
    b2 = np.array([0.1, -0.1, 0.0], dtype=np.float32)
    model.get_layer("head_hidden").set_weights([w1, b1])
    model.get_layer("logits").set_weights([w2, b2])

    x = _images(3, seed=7)
    x[:, :, :16] *= 0.1  # a dark left half: feature maps that vary across the image
    x[1, 8:24, 8:24] = 1.0
    A = model.get_layer("backbone")(x, training=False).numpy().astype(np.float64)  # (3, 16, 16, k)
    z1 = A.mean(axis=(1, 2)) @ w1 + b1
    logits = np.maximum(z1, 0) @ w2 + b2
    raw = []
    for i in range(3):
        c = int(np.argmax(logits[i]))
        alpha = w1 @ ((z1[i] > 0) * w2[:, c]) / (A.shape[1] * A.shape[2])
        raw.append((A[i] * alpha).sum(axis=-1))
    raw = np.stack(raw)
    np.testing.assert_allclose(grad_cam(model, x), np.maximum(raw, 0), rtol=1e-4, atol=1e-6)
    signs = set()
    # An explicit class uses that class's column, not the predicted one.
    for c in range(3):
        alpha = np.stack([w1 @ ((z1[i] > 0) * w2[:, c]) for i in range(3)]) / 256
        raw = np.einsum("nhwk,nk->nhw", A, alpha)
        signs |= set(np.sign(raw).ravel().tolist())
        np.testing.assert_allclose(
            grad_cam(model, x, class_index=c), np.maximum(raw, 0), rtol=1e-4, atol=1e-6
        )
    assert {-1.0, 1.0} <= signs  # some raw maps are partly negative: the final ReLU matters


# -- regressor and the decision-tree layer ---------------------------------------------------------


def test_regressor_shapes_names_and_tree(regressor):
    assert regressor.layers[-1].name == "votes"
    assert isinstance(regressor.get_layer("votes"), DecisionTreeLayer)
    for name in ("backbone", "gap", "votes_hidden", "answers_raw"):
        regressor.get_layer(name)
    assert regressor.get_layer("backbone").layers[-1].name == FEATURES_LAYER
    votes = regressor.predict(_images(6), verbose=0)
    assert votes.shape == (6, 37)
    assert_obeys_tree(votes)


# -- save / load ---------------------------------------------------------------------------------


def _round_trip(model: keras.Model, tmp_path, name: str) -> keras.Model:
    path = tmp_path / f"{name}.keras"
    model.save(path)
    return keras.saving.load_model(path, safe_mode=True)


def test_classifier_and_regressor_save_load_round_trip(classifier, regressor, tmp_path):
    x = _images(3, seed=11)
    for model in (classifier, regressor):
        loaded = _round_trip(model, tmp_path, model.name)
        np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    loaded = _round_trip(classifier, tmp_path, "classifier_again")
    np.testing.assert_allclose(grad_cam(loaded, x), grad_cam(classifier, x), rtol=1e-6, atol=1e-7)


def test_captioner_save_load_round_trip(captioner, tmp_path):
    x, tokens = _images(4, seed=12), _token_batch()
    h, c = np.full((4, UNITS), 0.1, np.float32), np.full((4, UNITS), -0.2, np.float32)
    step_in = [np.array([[5], [6], [0], [9]], np.int32), h, c]
    train = _round_trip(captioner.train, tmp_path, "train")
    np.testing.assert_array_equal(np.asarray(train([x, tokens])), np.asarray(captioner.train([x, tokens])))
    encoder = _round_trip(captioner.encoder, tmp_path, "encoder")
    for a, b in zip(encoder(x), captioner.encoder(x)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    step = _round_trip(captioner.step, tmp_path, "step")
    for a, b in zip(step(step_in), captioner.step(step_in)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # The encoder/step re-derived from a loaded train model are the originals' equals.
    rebuilt = captioner_from_train(train)
    for a, b in zip(rebuilt.step(step_in), captioner.step(step_in)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert rebuilt.step.get_layer("lstm") is train.get_layer("lstm")


# -- captioner -----------------------------------------------------------------------------------


def test_captioner_shapes_and_names(captioner):
    x, tokens = _images(4), _token_batch()
    assert captioner.train.output_shape == (None, None, VOCAB)
    assert np.asarray(captioner.train([x, tokens])).shape == (4, 9, VOCAB)
    h0, c0 = (np.asarray(t) for t in captioner.encoder(x))
    assert tuple(h0.shape) == tuple(c0.shape) == (4, UNITS)
    assert np.abs(np.asarray(h0)).max() < 1  # tanh
    logits, h, c = captioner.step([tokens[:, :1], h0, c0])
    assert tuple(logits.shape) == (4, VOCAB) and tuple(h.shape) == (4, UNITS)
    assert captioner.step.output_names == ["logits", "h_next", "c_next"]
    lstm = captioner.train.get_layer("lstm")
    assert type(lstm) is keras.layers.LSTM
    assert lstm.activation is keras.activations.tanh
    assert lstm.recurrent_activation is keras.activations.sigmoid
    assert captioner.train.get_layer("embedding").mask_zero
    assert (captioner.units, captioner.vocab_size) == (UNITS, VOCAB)


def test_captioner_models_share_weights(captioner):
    train, encoder, step = captioner.train, captioner.encoder, captioner.step
    assert train.get_layer("encoder") is encoder
    for name in ("embedding", "lstm", "vocab_logits"):
        assert step.get_layer(name) is train.get_layer(name)
    x, tokens = _images(2, seed=13), _token_batch()[:2]
    step_in = [tokens[:, 1:2], np.zeros((2, UNITS), np.float32), np.zeros((2, UNITS), np.float32)]

    def outputs():
        return (
            np.asarray(train([x, tokens])),
            np.asarray(encoder(x)[0]),
            np.asarray(step(step_in)[0]),
        )

    before = outputs()
    # A variable changed through one model changes every model that uses it.
    kernel = step.get_layer("lstm").cell.kernel
    saved = kernel.numpy()
    kernel.assign(saved + 0.5)
    try:
        after = outputs()
        assert not np.allclose(after[0], before[0]) and not np.allclose(after[2], before[2])
        np.testing.assert_array_equal(after[1], before[1])  # the encoder has no LSTM
    finally:
        kernel.assign(saved)
    dense = encoder.get_layer("init_h").kernel
    saved = dense.numpy()
    dense.assign(saved * -1.0)
    try:
        after = outputs()
        assert not np.allclose(after[0], before[0]) and not np.allclose(after[1], before[1])
    finally:
        dense.assign(saved)
    np.testing.assert_array_equal(outputs()[0], before[0])


def test_step_by_step_decode_equals_teacher_forcing(captioner):
    x, tokens = _images(4, seed=14), _token_batch()
    full = np.asarray(captioner.train([x, tokens], training=False))
    h, c = (np.asarray(t) for t in captioner.encoder(x, training=False))
    for t in range(tokens.shape[1]):
        logits, h, c = (np.asarray(v) for v in captioner.step([tokens[:, t : t + 1], h, c]))
        real = tokens[:, t] != PAD_ID
        np.testing.assert_allclose(logits[real], full[real, t], atol=1e-5, err_msg=f"position {t}")
    assert (tokens == PAD_ID).any()  # the batch did exercise the mask


def test_teacher_forcing_pairs():
    ids = np.array([[1, 7, 8, 2, 0, 0], [1, 7, 8, 9, 5, 2]], np.int32)
    tokens_in, targets = teacher_forcing_pairs(ids)
    np.testing.assert_array_equal(tokens_in, [[1, 7, 8, 0, 0], [1, 7, 8, 9, 5]])
    np.testing.assert_array_equal(targets, [[7, 8, 2, 0, 0], [7, 8, 9, 5, 2]])
    np.testing.assert_array_equal(tokens_in != PAD_ID, targets != PAD_ID)


def test_masked_loss_ignores_pad_positions():
    rng = np.random.default_rng(15)
    y_true = np.array([[5, 6, 2, 0, 0], [7, 2, 0, 0, 0]], np.int32)
    y_pred = rng.normal(size=(2, 5, VOCAB)).astype(np.float32)
    real = y_true != PAD_ID
    logp = y_pred - np.log(np.exp(y_pred).sum(-1, keepdims=True))
    ce = -np.take_along_axis(logp, y_true[..., None], axis=-1)[..., 0]
    expected = ce[real].mean()
    loss = float(masked_loss(y_true, y_pred))
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    assert not np.isclose(loss, ce.mean())
    noisy = y_pred.copy()
    noisy[~real] = rng.normal(0, 10, size=noisy[~real].shape)
    np.testing.assert_allclose(float(masked_loss(y_true, noisy)), loss, rtol=1e-6)
    assert float(masked_loss(np.zeros_like(y_true), y_pred)) == 0.0
    # Accuracy: the arg-max hits exactly on the real positions.
    hits = np.zeros_like(y_pred)
    hits[np.arange(2)[:, None], np.arange(5)[None, :], y_true] = 5.0
    hits[0, 0] = 0.0
    hits[0, 0, 9] = 5.0  # one miss among the 5 real positions
    assert np.isclose(float(masked_accuracy(y_true, hits)), 4 / 5)


def test_compiled_loss_and_metric_equal_the_masked_helpers(captioner, tmp_path):
    """Keras' own mask handling in ``compile`` must not reweight the masked loss or accuracy."""
    ids = np.array([[1, 5, 6, 7, 2, 0, 0], [1, 8, 2, 0, 0, 0, 0]], np.int32)
    tokens_in, targets = teacher_forcing_pairs(ids)
    x = _images(2, seed=16)
    model = build_captioner(CFG, VOCAB).train
    _randomise(model, 20)
    model.compile(optimizer="adam", loss=masked_loss, metrics=[MaskedAccuracy()])
    result = model.evaluate([x, tokens_in], targets, batch_size=2, verbose=0, return_dict=True)
    logits = model([x, tokens_in], training=False)
    np.testing.assert_allclose(result["loss"], float(masked_loss(targets, logits)), rtol=1e-5)
    accuracy = float(masked_accuracy(targets, logits))
    np.testing.assert_allclose(result["masked_accuracy"], accuracy, rtol=1e-5)
    # Targets whose pad positions differ from the input mask: still exactly the masked values.
    raw_targets = ids[:, 1:]
    result = model.evaluate([x, ids[:, :-1]], raw_targets, batch_size=2, verbose=0, return_dict=True)
    logits = model([x, ids[:, :-1]], training=False)
    np.testing.assert_allclose(result["loss"], float(masked_loss(raw_targets, logits)), rtol=1e-5)
    np.testing.assert_allclose(
        result["masked_accuracy"], float(masked_accuracy(raw_targets, logits)), rtol=1e-5
    )
    # A compiled model with the custom loss/metric reloads in safe mode.
    model.optimizer.build(model.trainable_variables)  # as after fit(); unbuilt ones don't reload
    path = tmp_path / "compiled.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert loaded.loss is masked_loss
    np.testing.assert_array_equal(
        np.asarray(loaded([x, tokens_in])), np.asarray(model([x, tokens_in]))
    )


def test_greedy_decode_is_consistent_with_teacher_forcing(captioner):
    tokenizer = Tokenizer(["<pad>", "<bos>", "<eos>", "<unk>"] + [f"w{i}" for i in range(VOCAB - 4)])
    x = _images(3, seed=17)
    ids = greedy_decode_ids(captioner, x, max_len=8)
    assert ids.shape == (3, 8) and (ids[:, 0] == BOS_ID).all()
    # Re-feeding the decoded prefix with teacher forcing predicts the same next tokens.
    full = np.asarray(captioner.train([x, ids[:, :-1]], training=False)).argmax(-1)
    for row in range(3):
        stop = np.flatnonzero(np.isin(ids[row, 1:], (EOS_ID, PAD_ID)))
        n = stop[0] + 1 if stop.size else 7
        np.testing.assert_array_equal(ids[row, 1 : n + 1], full[row, :n])
        assert (ids[row, n + 1 :] == PAD_ID).all()
    captions = greedy_decode(captioner, x, tokenizer, max_len=8)
    assert captions == tokenizer.decode(ids)


# -- ONNX ------------------------------------------------------------------------------------------


def _onnx_outputs(model, signature, feeds):
    tf2onnx = pytest.importorskip("tf2onnx")
    ort = pytest.importorskip("onnxruntime")
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=17)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return proto, session.run(None, feeds)


def test_models_convert_to_onnx(classifier, regressor, captioner):
    x = _images(3, seed=18)
    image_sig = [tf.TensorSpec((None, 32, 32, 3), tf.float32, name="image")]
    for model in (classifier, regressor):
        proto, (out,) = _onnx_outputs(model, image_sig, {"image": x})
        np.testing.assert_allclose(out, model.predict(x, verbose=0), atol=1e-4, err_msg=model.name)
        assert {n.op_type for n in proto.graph.node}.isdisjoint({"Loop", "Scan", "Erf"})

    proto, outs = _onnx_outputs(captioner.encoder, image_sig, {"image": x})
    for a, b in zip(outs, captioner.encoder(x)):
        np.testing.assert_allclose(a, np.asarray(b), atol=1e-4)

    step_sig = [
        tf.TensorSpec((None, 1), tf.int32, name="token"),
        tf.TensorSpec((None, UNITS), tf.float32, name="h"),
        tf.TensorSpec((None, UNITS), tf.float32, name="c"),
    ]
    rng = np.random.default_rng(19)
    feeds = {
        "token": np.array([[5], [BOS_ID], [PAD_ID]], np.int32),
        "h": rng.normal(0, 0.5, (3, UNITS)).astype(np.float32),
        "c": rng.normal(0, 0.5, (3, UNITS)).astype(np.float32),
    }
    proto, outs = _onnx_outputs(captioner.step, step_sig, feeds)
    assert [o.name for o in proto.graph.output] == ["logits", "h_next", "c_next"]
    assert "LSTM" in {n.op_type for n in proto.graph.node}
    for a, b in zip(outs, captioner.step([feeds["token"], feeds["h"], feeds["c"]])):
        np.testing.assert_allclose(a, np.asarray(b), atol=1e-4)
