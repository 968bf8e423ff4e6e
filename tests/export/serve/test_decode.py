"""Batched greedy captioning over onnxruntime sessions against the Keras greedy decoder."""

from __future__ import annotations

import numpy as np
import pytest

from catalogs.tokenizer import BOS_ID, EOS_ID, PAD_ID
from export.serve.decode import greedy_decode_ids
from export.serve.runtime import create_session
from models.artifacts import load_trained
from models.captioner import captioner_from_train
from models.captioner import greedy_decode_ids as keras_greedy_decode_ids
from tests.export.tiny_models import CFG, structured_images

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
MAX_LEN = CFG.captioner.max_len


@pytest.fixture(scope="module")
def sessions(tiny_bundle):
    return tuple(create_session(tiny_bundle / f"captioner_{n}.onnx", ["CPUExecutionProvider"])
                 for n in ("encoder", "step"))


@pytest.fixture(scope="module")
def keras_captioner(tiny_models):
    return captioner_from_train(load_trained(tiny_models, "captioner")[0])


def _stops(ids):
    """Per row, the position of the first <eos>/<pad> after <bos> (max_len when none)."""
    ends = np.isin(ids[:, 1:], (EOS_ID, PAD_ID))
    return [int(np.argmax(e)) + 1 if e.any() else MAX_LEN for e in ends]


def test_onnx_greedy_decode_equals_keras(sessions, keras_captioner):
    x = structured_images(16, seed=0)
    ours = greedy_decode_ids(*sessions, x, MAX_LEN)
    np.testing.assert_array_equal(ours, keras_greedy_decode_ids(keras_captioner, x, MAX_LEN))
    assert ours.dtype == np.int32 and (ours[:, 0] == BOS_ID).all()
    assert len(set(_stops(ours))) >= 3  # rows stop at different positions: per-row stopping is exercised
    for row, stop in zip(ours, _stops(ours)):
        assert (row[stop + 1:] == PAD_ID).all()


def test_rows_are_independent_of_their_batch(sessions):
    x = structured_images(6, seed=1)
    batch = greedy_decode_ids(*sessions, x, MAX_LEN)
    for i in range(len(x)):
        np.testing.assert_array_equal(greedy_decode_ids(*sessions, x[i:i + 1], MAX_LEN)[0], batch[i])


def test_stops_as_soon_as_every_row_is_done(sessions):
    class Counting:
        def __init__(self, session):
            self.session, self.calls = session, 0

        def run(self, *args):
            self.calls += 1
            return self.session.run(*args)

    encoder, step = sessions
    counted = Counting(step)
    ids = greedy_decode_ids(encoder, counted, structured_images(16, seed=0), MAX_LEN)
    assert max(_stops(ids)) < MAX_LEN  # the batch finishes early…
    assert counted.calls == max(_stops(ids))  # …and no step runs after its last row stopped


def test_bad_arguments_and_empty_batches(sessions):
    empty = greedy_decode_ids(*sessions, np.zeros((0, 32, 32, 3), np.float32), MAX_LEN)
    assert empty.shape == (0, MAX_LEN)
    with pytest.raises(ValueError, match="batch of images"):
        greedy_decode_ids(*sessions, np.zeros((32, 32, 3), np.float32), MAX_LEN)
    with pytest.raises(ValueError, match="max_len"):
        greedy_decode_ids(*sessions, np.zeros((1, 32, 32, 3), np.float32), 1)
