"""Batched greedy captioning over two onnxruntime sessions, in numpy.

The encoder runs once per image batch; the decoder step runs once per position for the whole
batch and decoding stops as soon as every row has finished. Same rules, hence the same token ids,
as :func:`models.captioner.greedy_decode_ids` (the Keras reference).
"""

from __future__ import annotations

import numpy as np

from export.specs import ENCODER_OUTPUTS, STEP_INPUTS, STEP_OUTPUTS
from models.tokenizer import BOS_ID, EOS_ID, PAD_ID


def greedy_decode_ids(encoder, step, images: np.ndarray, max_len: int) -> np.ndarray:
    """Token ids (N, max_len) int32: ``<bos>``, then arg-max tokens; after a row's ``<eos>`` (or a
    predicted ``<pad>``) the rest of the row is ``<pad>``. ``encoder``/``step``: sessions of the
    ``captioner_encoder`` / ``captioner_step`` files (anything with onnxruntime's ``run``)."""
    images = np.ascontiguousarray(images, dtype=np.float32)
    if images.ndim != 4:
        raise ValueError(f"expected a batch of images (N, H, W, C), got shape {images.shape}")
    if images.shape[0] == 0:
        return greedy_decode_from_state(step, np.zeros((0, 1), np.float32), np.zeros((0, 1), np.float32), max_len)
    h, c = encoder.run(list(ENCODER_OUTPUTS), {"image": images})
    return greedy_decode_from_state(step, h, c, max_len)


def greedy_decode_from_state(step, h: np.ndarray, c: np.ndarray, max_len: int) -> np.ndarray:
    """:func:`greedy_decode_ids` from the encoder's initial states ``h``, ``c`` (N, units)."""
    if max_len < 2:
        raise ValueError(f"max_len must be ≥ 2, got {max_len}")
    n = h.shape[0]
    out = np.full((n, max_len), PAD_ID, dtype=np.int32)
    out[:, 0] = BOS_ID
    if n == 0:
        return out
    token = np.full((n, 1), BOS_ID, dtype=np.int32)
    done = np.zeros(n, dtype=bool)
    token_in, h_in, c_in = STEP_INPUTS
    for pos in range(1, max_len):
        logits, h, c = step.run(list(STEP_OUTPUTS), {token_in: token, h_in: h, c_in: c})
        nxt = logits.argmax(axis=-1).astype(np.int32)
        out[:, pos] = np.where(done, PAD_ID, nxt)
        done |= (nxt == EOS_ID) | (nxt == PAD_ID)
        if done.all():
            break
        token = nxt[:, None]
    return out
