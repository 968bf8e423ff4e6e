"""The classifier with its Grad-CAM computed in forward ops, for export as ONE ONNX graph.

tf2onnx 1.17 refuses gradient ops (``ReluGrad``, ``TanhGrad``, GELU's ``Erfc``) and a
``tf.GradientTape`` graph broke at run time, so the class-logit gradient is written out. For the
head ``features A (N, h, w, k) → GAP → Dense(relu) (W1, b1) → Dense (W2, b2)`` and class ``c``::

    α_k = (W1 · (mask(z1 > 0) ⊙ W2[:, c]))_k / (h·w)        CAM = ReLU(Σ_k α_k A_k)

(derivation in ``models.classifier``), which is exactly what :func:`models.classifier.grad_cam`
gets by autodiff: the predicted class, logits not probabilities, raw map at feature resolution.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from catalogs.outputs import EMBEDDING
from export.builder.errors import ExportError
from models.classifier import BACKBONE_LAYER
from models.embedding import EMBEDDING_EPS, EmbeddingProjection
from models.ood import OodReference


def _head_layers(classifier: keras.Model):
    try:
        layers = [classifier.get_layer(n) for n in (BACKBONE_LAYER, "gap", "head_hidden", "logits", "probs")]
    except ValueError as exc:
        raise ExportError(f"the classifier lacks a layer in-graph Grad-CAM needs: {exc}") from None
    _, gap, hidden, logits, _ = layers
    problems = []
    if not isinstance(gap, keras.layers.GlobalAveragePooling2D):
        problems.append(f"'gap' is a {type(gap).__name__}, not GlobalAveragePooling2D")
    if not isinstance(hidden, keras.layers.Dense) or hidden.activation is not keras.activations.relu:
        problems.append("'head_hidden' is not a Dense layer with a ReLU activation")
    if not isinstance(logits, keras.layers.Dense) or logits.activation is not keras.activations.linear:
        problems.append("'logits' is not a Dense layer without activation")
    if problems:
        # The closed-form gradient holds for this head only; any other would export a wrong map.
        raise ExportError("in-graph Grad-CAM needs a GAP → Dense(relu) → Dense head: " + "; ".join(problems))
    return layers


def classifier_with_cam(classifier: keras.Model, signature: list[tf.TensorSpec], ood: OodReference,
                        embedding: EmbeddingProjection):
    """A ``tf.function`` image → ``{"probs": (N, C), "cam": (N, h, w), "ood_score": (N,),
    "embedding": (N, d)}`` sharing the classifier's layers (no weights copied; Dropout is skipped,
    the identity at inference). ``ood_score`` is :meth:`models.ood.OodReference.scores` and
    ``embedding`` :meth:`models.embedding.EmbeddingProjection.project` of the pooled features."""
    backbone, gap, hidden, to_logits, softmax = _head_layers(classifier)
    width = gap.output.shape[-1]
    for what, k in (("OOD reference", ood.mean.shape[0]), ("embedding projection", embedding.mean.shape[0])):
        if k != width:
            raise ExportError(f"the {what} has {k} features, the classifier's gap layer {width}: the sidecar "
                              "belongs to another model")
    # numpy here, tf.constant inside the function: a tensor made outside would be captured as a
    # graph input, which tf2onnx exports as a required feed instead of an initializer.
    mean, whitening = ood.mean.astype("float32"), ood.whitening.astype("float32")
    scale = float(ood.scale)
    e_mean, e_components = embedding.mean.astype("float32"), embedding.components.astype("float32")

    @tf.function(input_signature=signature)
    def forward(image):
        features = backbone(image, training=False)  # A: (N, h, w, k)
        pooled = gap(features)
        h = hidden(pooled)  # relu(z1), so (h > 0) == mask(z1 > 0)
        logits = to_logits(h)
        predicted = tf.argmax(logits, axis=-1)
        w2_c = tf.gather(tf.transpose(to_logits.kernel), predicted)  # W2[:, c] per image: (N, hidden)
        upstream = tf.cast(h > 0, h.dtype) * w2_c
        area = tf.cast(tf.shape(features)[1] * tf.shape(features)[2], features.dtype)
        alpha = tf.matmul(upstream, hidden.kernel, transpose_b=True) / area  # (N, k)
        cam = tf.nn.relu(tf.einsum("nhwk,nk->nhw", features, alpha))
        centred = pooled - tf.constant(mean)
        ood_score = tf.norm(tf.matmul(centred, tf.constant(whitening)), axis=-1) / tf.constant(scale, tf.float32)
        projected = tf.matmul(pooled - tf.constant(e_mean), tf.constant(e_components))
        norm = tf.maximum(tf.norm(projected, axis=-1, keepdims=True), tf.constant(EMBEDDING_EPS, tf.float32))
        return {"probs": softmax(logits), "cam": cam, "ood_score": ood_score, EMBEDDING: projected / norm}

    return forward
