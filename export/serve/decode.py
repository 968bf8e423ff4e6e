"""Batched greedy captioning over two onnxruntime sessions: the encoder runs once per image
batch, then the step session once per position, by :func:`catalogs.tokenizer.greedy_caption_ids`
(the one decoding loop, shared with the Keras reference ``models.captioner.greedy_decode_ids``)."""

from __future__ import annotations

import numpy as np

from catalogs.tokenizer import greedy_caption_ids, greedy_ids
from export.serve.bundle import ENCODER_OUTPUTS, IMAGE_INPUT, STEP_INPUTS, STEP_OUTPUTS


def greedy_decode_ids(encoder, step, images: np.ndarray, max_len: int) -> np.ndarray:
    """Token ids (N, max_len) int32 for a batch of images; ``encoder``/``step``: sessions of the
    ``captioner_encoder`` / ``captioner_step`` files (anything with onnxruntime's ``run``)."""
    return greedy_caption_ids(lambda x: encoder.run(list(ENCODER_OUTPUTS), {IMAGE_INPUT: x}),
                              _session_step(step), images, max_len)


def _session_step(step):
    token_in, h_in, c_in = STEP_INPUTS
    return lambda t, h, c: step.run(list(STEP_OUTPUTS), {token_in: t, h_in: h, c_in: c})


def greedy_decode_from_state(step, h: np.ndarray, c: np.ndarray, max_len: int,
                             device: str | None = None) -> np.ndarray:
    """:func:`greedy_decode_ids` from the encoder's initial states ``h``, ``c`` (N, units).
    ``device`` (``"cuda"``, or ``"cpu"``): run the steps through onnxruntime IO binding with the
    LSTM state kept on that device between steps, so only tokens and logits cross the bus."""
    if device is None:
        return greedy_ids(_session_step(step), h, c, max_len)
    token_in, h_in, c_in = STEP_INPUTS
    logits_out, h_out, c_out = STEP_OUTPUTS

    def bound_step(token, h, c):
        binding = step.io_binding()
        binding.bind_cpu_input(token_in, token)
        for name, state in ((h_in, h), (c_in, c)):
            if isinstance(state, np.ndarray):  # the first step's, from the encoder
                binding.bind_cpu_input(name, np.ascontiguousarray(state))
            else:
                binding.bind_ortvalue_input(name, state)
        binding.bind_output(logits_out)  # the arg-max is taken here, on the host
        binding.bind_output(h_out, device)
        binding.bind_output(c_out, device)
        step.run_with_iobinding(binding)
        logits, h_next, c_next = binding.get_outputs()
        return logits.numpy(), h_next, c_next

    return greedy_ids(bound_step, h, c, max_len)
