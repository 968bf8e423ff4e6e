"""Convolutions that commute with the eight rotations and flips of the square (the dihedral group
D4), so that a galaxy's class cannot depend on how its cutout happens to be oriented.

A D4 feature map keeps 8 copies of each of its channels, one per group element, in group-major
order (channel ``g * C + c``). Rotating or flipping the input by ``h`` rotates or flips every map
spatially and permutes the 8 copies; pooling over the copies at the end (:class:`GroupPool`) then
gives features that the rotation only moves about, and their global average does not change at
all (the rotation-pooled "cyclic" networks of the Kaggle Galaxy Challenge's winner and
equivariant ResNets on Galaxy10 reach the same invariance by computing every view, ×8 the cost).

Each convolution holds one base kernel and expands it into the full ``(3, 3, in, 8 * C)`` kernel
by transforming it with each group element (:func:`expansion_index`): the same multiply-adds as a
plain convolution of ``8 * C`` filters, with an eighth of its weights. Only forward ops run on the
kernel (a gather, a transpose, a reshape) and the tied batch norm is a per-channel multiply-add at
inference, so tf2onnx folds both into constants: the exported graph is that of a plain CNN
(measured: the same op counts as ``small_cnn``'s, its speed in proportion to the multiply-adds).
"""

from __future__ import annotations

import itertools

import keras
import numpy as np
from keras import ops

ORDER = 8  # |D4|: 4 rotations by 90°, each with and without a flip


def group_matrices() -> np.ndarray:
    """The 8 elements of D4 as 2×2 integer matrices acting on (row, column) offsets; element
    ``4 * m + r`` is ``r`` quarter turns after ``m`` flips."""
    turn = np.array([[0, -1], [1, 0]])
    flip = np.array([[1, 0], [0, -1]])
    return np.stack([np.linalg.matrix_power(turn, r) @ np.linalg.matrix_power(flip, m)
                     for m in (0, 1) for r in range(4)])


def _index(mats: np.ndarray, m: np.ndarray) -> int:
    return int(next(i for i, g in enumerate(mats) if np.array_equal(g, m)))


def expansion_index(lifting: bool) -> np.ndarray:
    """Where each entry of the full kernel comes from in the flattened base kernel.

    A lifting convolution (plain image in) has base kernel ``(9, in, C)``; the full kernel's
    output copy ``g`` is the base kernel with its 9 taps moved by ``g⁻¹``: index ``(9, 8)``
    (tap, g) into the 9 base taps. A group convolution (D4 map in) has base kernel
    ``(9, 8, in, C)`` (tap, input copy); output copy ``g`` reads tap ``g⁻¹p`` of input copy
    ``g⁻¹h``: index ``(9, 8, 8)`` (tap, h, g) into the 72 flattened (tap, copy) pairs.
    """
    mats = group_matrices()
    inverse = [np.linalg.inv(g).round().astype(int) for g in mats]
    taps = list(itertools.product((-1, 0, 1), repeat=2))  # row-major 3×3: tap k = (dy, dx)
    tap_of = {t: k for k, t in enumerate(taps)}
    moved = np.array([[tap_of[tuple(inv @ np.array(t))] for inv in inverse] for t in taps])  # (9, 8)
    if lifting:
        return moved
    copy = np.array([[_index(mats, inverse[g] @ mats[h]) for g in range(ORDER)] for h in range(ORDER)])
    return moved[:, None, :] * ORDER + copy[None, :, :]  # (9, 8, 8)


@keras.saving.register_keras_serializable(package="morphcat")
class D4Conv2D(keras.layers.Layer):
    """A 3×3, stride-1, "same"-padded convolution without bias whose ``8 * filters`` outputs
    are the 8 rotated/flipped copies of ``filters`` base filters. ``lifting=True`` for the first
    layer (any channels in); otherwise the input must be a D4 map (channels a multiple of 8)."""

    def __init__(self, filters: int, lifting: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.lifting = bool(lifting)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        if self.lifting:
            shape = (9, channels, self.filters)
        else:
            if channels % ORDER:
                raise ValueError(f"{self.name}: a D4 map has a multiple of {ORDER} channels, got {channels}")
            shape = (9, ORDER, channels // ORDER, self.filters)
        self.kernel = self.add_weight(name="kernel", shape=shape, initializer="glorot_uniform")
        self._index = expansion_index(self.lifting)

    def full_kernel(self):
        """The ``(3, 3, in, 8 * filters)`` kernel of a plain convolution computing the same."""
        k = self.kernel
        if self.lifting:
            taken = ops.take(k, self._index, axis=0)  # (9, 8g, in, C)
            full = ops.transpose(taken, (0, 2, 1, 3))
        else:
            flat = ops.reshape(k, (9 * ORDER, k.shape[2], self.filters))
            taken = ops.take(flat, self._index, axis=0)  # (9, 8h, 8g, in, C)
            full = ops.reshape(ops.transpose(taken, (0, 1, 3, 2, 4)), (9, ORDER * k.shape[2], ORDER, self.filters))
        return ops.reshape(full, (3, 3, full.shape[1], ORDER * self.filters))

    def call(self, inputs):
        return ops.conv(inputs, ops.cast(self.full_kernel(), inputs.dtype), strides=1, padding="same")

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], ORDER * self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "lifting": self.lifting}


@keras.saving.register_keras_serializable(package="morphcat")
class GroupPool(keras.layers.Layer):
    """A D4 map ``(h, w, 8 * C)`` → ``(h, w, C)``: the maximum over each channel's 8 copies, which
    a rotation or flip of the input only moves spatially."""

    def call(self, inputs):
        c = inputs.shape[-1] // ORDER
        return ops.max(ops.reshape(inputs, (-1, *inputs.shape[1:-1], ORDER, c)), axis=-2)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] // ORDER)


@keras.saving.register_keras_serializable(package="morphcat")
class TiedBatchNorm(keras.layers.Layer):
    """Batch normalisation of a D4 map with one mean, variance, scale and offset per base channel,
    shared by its 8 copies (per-copy statistics would differ between orientations and break the
    symmetry). At inference it is one per-channel multiply and add on the 4-D map, which the
    exporters fold into the preceding convolution as they do a plain batch norm."""

    def __init__(self, momentum: float = 0.9, epsilon: float = 1e-3, **kwargs):
        super().__init__(**kwargs)
        self.momentum, self.epsilon = float(momentum), float(epsilon)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        if channels % ORDER:
            raise ValueError(f"{self.name}: a D4 map has a multiple of {ORDER} channels, got {channels}")
        c = channels // ORDER
        # float32 reads under mixed precision too (autocast off): the statistics need the range.
        weight = lambda name, init, trainable=True: self.add_weight(  # noqa: E731
            name=name, shape=(c,), initializer=init, trainable=trainable, autocast=False)
        self.gamma, self.beta = weight("gamma", "ones"), weight("beta", "zeros")
        self.moving_mean = weight("moving_mean", "zeros", False)
        self.moving_variance = weight("moving_variance", "ones", False)

    def call(self, inputs, training=None):
        if training:
            return self._normalise_batch(inputs)
        scale = self.gamma * ops.rsqrt(self.moving_variance + self.epsilon)
        offset = self.beta - self.moving_mean * scale
        tile = lambda v: ops.cast(ops.tile(v, (ORDER,)), inputs.dtype)  # noqa: E731 (group-major channels)
        return inputs * tile(scale) + tile(offset)

    def _normalise_batch(self, inputs):
        """Training: the copies of each channel laid side by side along the width (a free reshape
        of the group-major map), so that TensorFlow's fused batch norm, one pass per direction,
        pools each channel's statistics over all 8 copies. It took a third of the time of the
        same statistics written as separate reductions and multiply-adds, and batch norm was the
        largest cost of a training step (measured on 2 cores)."""
        import tensorflow as tf

        n, h, w, channels = ops.shape(inputs)
        side_by_side = ops.reshape(inputs, (n, h, w * ORDER, channels // ORDER))
        # float32 under mixed precision, as Keras' own statistics (CPU's fused bfloat16 is slow)
        y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            ops.cast(side_by_side, "float32"), self.gamma, self.beta, epsilon=self.epsilon, is_training=True)
        pixels = ops.cast(n * h * w * ORDER, "float32")
        variance = variance * (pixels - 1.0) / pixels  # it returns the unbiased variance; Keras keeps the biased
        m = self.momentum
        self.moving_mean.assign(self.moving_mean * m + mean * (1 - m))
        self.moving_variance.assign(self.moving_variance * m + variance * (1 - m))
        return ops.cast(ops.reshape(y, (n, h, w, channels)), inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "epsilon": self.epsilon}
