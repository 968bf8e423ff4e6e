"""Morphology classifier's head (the classifier is a sub-graph of
``models.morphology.build_morphology``) and its Grad-CAM reference implementation.

Graph (layer names in quotes)::

    "image" → "backbone" (nested model, last layer "features")
            → "gap" GlobalAveragePooling2D
            → "head_hidden" Dense(hidden, activation="relu")   # ReLU INSIDE the Dense
            → "head_dropout" Dropout
            → "logits" Dense(n_classes)
            → "probs" Softmax                                  # the model output

Because the ReLU sits inside ``head_hidden``, that layer's output is ``h = relu(z1)`` with
``z1 = gap @ W1 + b1``, and ``mask(z1 > 0) == (h > 0)``. For this head

    d logit_c / d A[i, j, k] = (1 / (H·W)) · (W1 · (mask(z1 > 0) ⊙ W2[:, c]))_k

for every position (i, j), so the Grad-CAM channel weight α_k (the spatial mean of that
gradient) is ``(W1 · (mask ⊙ W2[:, c]))_k / (H·W)`` — note the 1/(H·W) from the average pooling,
which :func:`grad_cam` (via autodiff) includes.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from models.backbone import FEATURES_LAYER
from models.config import ModelConfig

BACKBONE_LAYER = "backbone"
IMAGE_INPUT = "image"


def check_class_names(class_names: Sequence[str]) -> list[str]:
    if isinstance(class_names, str):
        raise TypeError("class_names must be a sequence of names, not one string")
    names = list(class_names)
    if len(names) < 2:
        raise ValueError(f"a classifier needs at least 2 classes, got {names}")
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate class names in {names}")
    return names


def head_suffix(head: int) -> str:
    """Layer-name suffix of class head ``head``: none for the first (the exported one, whose layer
    names Grad-CAM's export reads), ``_<k>`` for the k-th further label scheme."""
    return "" if head == 0 else f"_{head}"


def classifier_head(pooled, config: ModelConfig, n_classes: int, head: int = 0):
    """GAP output → class probabilities: ``head_hidden`` → ``head_dropout`` → ``logits`` → ``probs``
    (each name with :func:`head_suffix`)."""
    sfx = head_suffix(head)
    x = keras.layers.Dense(config.head.hidden, activation="relu", name=f"head_hidden{sfx}")(pooled)
    x = keras.layers.Dropout(config.head.dropout, name=f"head_dropout{sfx}")(x)
    # float32 outputs whatever the compute precision (models.precision): a bfloat16 softmax
    # rounds small probabilities away.
    logits = keras.layers.Dense(n_classes, name=f"logits{sfx}", dtype="float32")(x)
    return keras.layers.Softmax(name=f"probs{sfx}", dtype="float32")(logits)


def image_input(config: ModelConfig):
    image = config.image
    return keras.Input(shape=(image.size, image.size, image.channels), name=IMAGE_INPUT)


def grad_cam_model(classifier: keras.Model) -> keras.Model:
    """A model sharing ``classifier``'s layers: image → (features (N, h, w, k), logits (N, C)).

    Built by re-applying the classifier's backbone and head layers (Dropout is skipped: it is
    the identity at inference), so no weights are copied.
    """
    backbone = classifier.get_layer(BACKBONE_LAYER)
    inputs = keras.Input(shape=classifier.input_shape[1:], name=IMAGE_INPUT)
    features = backbone(inputs)
    x = classifier.get_layer("gap")(features)
    x = classifier.get_layer("head_hidden")(x)
    logits = classifier.get_layer("logits")(x)
    return keras.Model(inputs, [features, logits], name="grad_cam")


def pooled_features(classifier: keras.Model, images) -> np.ndarray:
    """The ``gap`` layer's output (N, k) for an array of images: what the out-of-distribution
    reference (``models.ood``) scores, computed as Keras would for export parity."""
    model = keras.Model(classifier.input, classifier.get_layer("gap").output, name="pooled_features")
    x = np.asarray(images, np.float32)
    return np.concatenate([np.asarray(model(x[i:i + 128], training=False)) for i in range(0, max(len(x), 1), 128)])


def logits(classifier: keras.Model, images, head: int = 0) -> np.ndarray:
    """The ``logits`` layer's output (N, C) of class head ``head`` for an array of images
    (batches of 128)."""
    layer = classifier.get_layer(f"logits{head_suffix(head)}")
    model = keras.Model(classifier.input, layer.output, name="logits_only")
    x = np.asarray(images, np.float32)
    return np.concatenate([np.asarray(model(x[i:i + 128], training=False)) for i in range(0, max(len(x), 1), 128)])


def fold_temperature(classifier: keras.Model, temperature: float, head: int = 0) -> None:
    """Make ``probs = softmax(logits / T)`` part of the model: the ``logits`` layer's kernel and
    bias are divided by ``T``, so Keras, the exported graph and every probability column carry
    the calibration with no extra layer (arg-max, hence Grad-CAM's class, unchanged)."""
    if not temperature > 0:
        raise ValueError(f"a temperature must be > 0, got {temperature}")
    layer = classifier.get_layer(f"logits{head_suffix(head)}")
    layer.set_weights([w / np.float32(temperature) for w in layer.get_weights()])


def features_layer(classifier: keras.Model) -> keras.layers.Layer:
    """The backbone's last layer, ``features`` (the Grad-CAM target)."""
    return classifier.get_layer(BACKBONE_LAYER).get_layer(FEATURES_LAYER)


def grad_cam(classifier: keras.Model, images, class_index=None) -> np.ndarray:
    """Raw Grad-CAM maps (N, h, w) at feature-map resolution, float32, ≥ 0.

    ``cam = ReLU(Σ_k α_k A_k)`` with ``α_k`` = spatial mean of ``d logit_c / d A_k`` (logits, not
    probabilities). ``class_index``: None → each image's predicted (arg-max) class; an int → that
    class for every image; a sequence of N ints → one class per image. No upsampling, no
    normalisation.
    """
    x = tf.convert_to_tensor(np.asarray(images, dtype=np.float32))
    if x.shape.rank != 4:
        raise ValueError(f"expected a batch of images (N, H, W, C), got shape {tuple(x.shape)}")
    model = grad_cam_model(classifier)
    classes = None
    if class_index is not None:
        n_classes = classifier.output_shape[-1]
        idx = np.broadcast_to(np.asarray(class_index, dtype=np.int64), (x.shape[0],))
        if np.any((idx < 0) | (idx >= n_classes)):
            raise ValueError(f"class_index out of range [0, {n_classes}): {class_index}")
        classes = tf.constant(idx, dtype=tf.int32)
    _, cam = grad_cam_tensors(model, x, classes)
    return cam.numpy().astype(np.float32)


def grad_cam_tensors(cam_model: keras.Model, x, classes=None):
    """``(logits, cam)`` as tensors for a :func:`grad_cam_model`, by ``tf.GradientTape``; traceable
    inside a ``tf.function``. ``classes`` (N,) int32, or None for each image's arg-max class."""
    with tf.GradientTape() as tape:
        features, logits = cam_model(x, training=False)
        tape.watch(features)
        if classes is None:
            classes = tf.argmax(logits, axis=-1, output_type=tf.int32)
        target = tf.reduce_sum(logits * tf.one_hot(classes, logits.shape[-1], dtype=logits.dtype))
    grads = tape.gradient(target, features)  # (N, h, w, k); rows are independent
    alpha = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)  # (N, 1, 1, k)
    return logits, tf.nn.relu(tf.reduce_sum(alpha * features, axis=-1))
