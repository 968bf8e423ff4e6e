"""The Keras path the benchmark compares morphcat with: the same trained models, run the way a
careful TensorFlow user would, not a strawman.

- input: a ``tf.data`` pipeline over the image files (``read_file`` → ``decode_and_crop_jpeg``,
  which decodes only the central crop window → antialiased resize → scale), parallel map with
  ``AUTOTUNE``, batched and prefetched so decoding overlaps inference;
- classifier: probabilities and the batched ``tf.GradientTape`` Grad-CAM of the predicted class
  (``models.classifier.grad_cam_tensors``), in one compiled ``tf.function``;
- regressor: one compiled ``tf.function`` per batch;
- captions: batched greedy decoding (``models.captioner.greedy_decode_ids``: encoder once per
  batch, one step per position for the whole batch) over compiled encoder and step functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from catalogs.inputs import ImageSpec
from catalogs.tokenizer import Tokenizer
from models.artifacts import load_trained
from models.captioner import CaptionerModels, captioner_from_train, greedy_decode_ids
from models.classifier import grad_cam_model, grad_cam_tensors
from models.config import ModelConfig


class _Compiled:
    """A Keras model called through one ``tf.function`` (as ``model(inputs, training=False)``)."""

    def __init__(self, model):
        self._fn = tf.function(lambda inputs: model(inputs, training=False), reduce_retracing=True)

    def __call__(self, inputs, training: bool = False):
        return self._fn(inputs)


class KerasPath:
    """The three trained models of ``models_dir``, loaded once, compiled for inference."""

    def __init__(self, models_dir: Path):
        classifier, side = load_trained(models_dir, "classifier")
        regressor, _ = load_trained(models_dir, "regressor")
        captioner, cap_side = load_trained(models_dir, "captioner")
        self.image: ImageSpec = ModelConfig.from_dict(side["config"]).image
        cam_model = grad_cam_model(classifier)
        self._classify = tf.function(lambda x: _probs_and_cam(cam_model, x), reduce_retracing=True)
        self._votes = _Compiled(regressor)
        parts = captioner_from_train(captioner)
        self._captioner = CaptionerModels(parts.train, _Compiled(parts.encoder), _Compiled(parts.step))
        self._max_len = int(cap_side["max_len"])
        self._tokenizer = Tokenizer.from_dict(cap_side["tokenizer"])

    def dataset(self, files: Sequence[str], batch_size: int) -> tf.data.Dataset:
        spec = self.image

        def load(path):
            data = tf.io.read_file(path)
            shape = tf.image.extract_jpeg_shape(data)
            side = tf.cast(tf.round(tf.cast(tf.minimum(shape[0], shape[1]), tf.float32) * spec.crop), tf.int32)
            window = tf.stack([(shape[0] - side) // 2, (shape[1] - side) // 2, side, side])
            image = tf.io.decode_and_crop_jpeg(data, window, channels=spec.channels)
            return tf.image.resize(image, (spec.size, spec.size), antialias=True) * spec.scale

        return (tf.data.Dataset.from_tensor_slices(list(files))
                .map(load, num_parallel_calls=tf.data.AUTOTUNE)
                .batch(batch_size).prefetch(tf.data.AUTOTUNE))

    def annotate(self, files: Sequence[str], batch_size: int) -> int:
        """Every output morphcat writes, as numpy, for ``files``; returns the rows done."""
        rows = 0
        for x in self.dataset(files, batch_size):
            probs, _cam = (np.asarray(t) for t in self._classify(x))
            _votes = np.asarray(self._votes(x))
            _captions = self._tokenizer.decode(greedy_decode_ids(self._captioner, x, self._max_len))
            rows += len(probs)
        return rows


def _probs_and_cam(cam_model, x):
    logits, cam = grad_cam_tensors(cam_model, x)
    return tf.nn.softmax(logits), cam
