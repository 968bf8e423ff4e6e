"""Batched greedy captioning over two onnxruntime sessions: the encoder runs once per image
batch, then :func:`catalogs.tokenizer.greedy_ids` (the one decoding loop, shared with the Keras
reference ``models.captioner.greedy_decode_ids``) runs the step session once per position."""

from __future__ import annotations

import numpy as np

from catalogs.tokenizer import greedy_ids
from export.serve.bundle import ENCODER_OUTPUTS, IMAGE_INPUT, STEP_INPUTS, STEP_OUTPUTS


def greedy_decode_ids(encoder, step, images: np.ndarray, max_len: int) -> np.ndarray:
    """Token ids (N, max_len) int32 for a batch of images; ``encoder``/``step``: sessions of the
    ``captioner_encoder`` / ``captioner_step`` files (anything with onnxruntime's ``run``)."""
    images = np.ascontiguousarray(images, dtype=np.float32)
    if images.ndim != 4:
        raise ValueError(f"expected a batch of images (N, H, W, C), got shape {images.shape}")
    if images.shape[0] == 0:
        return greedy_decode_from_state(step, np.zeros((0, 1), np.float32), np.zeros((0, 1), np.float32), max_len)
    h, c = encoder.run(list(ENCODER_OUTPUTS), {IMAGE_INPUT: images})
    return greedy_decode_from_state(step, h, c, max_len)


def greedy_decode_from_state(step, h: np.ndarray, c: np.ndarray, max_len: int) -> np.ndarray:
    """:func:`greedy_decode_ids` from the encoder's initial states ``h``, ``c`` (N, units)."""
    token_in, h_in, c_in = STEP_INPUTS
    return greedy_ids(lambda t, h, c: step.run(list(STEP_OUTPUTS), {token_in: t, h_in: h, c_in: c}), h, c, max_len)
