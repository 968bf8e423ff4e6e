"""Word tokenizer for captions: special ids, ordering, round trips, unknowns and truncation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from catalogs.tokenizer import BOS_ID, EOS_ID, PAD_ID, SPECIALS, UNK_ID, Tokenizer, greedy_caption_ids, tokenize

CAPTIONS = [
    "a spiral galaxy with a central bar, tight arms and a ring.",
    "an edge-on disk galaxy with a rounded bulge.",
    "a round elliptical galaxy.",
    "a disk galaxy without spiral arms, with a bar.",
]


def test_special_token_ids():
    tok = Tokenizer.fit(CAPTIONS)
    assert (PAD_ID, BOS_ID, EOS_ID, UNK_ID) == (0, 1, 2, 3)
    assert tok.tokens[:4] == ("<pad>", "<bos>", "<eos>", "<unk>") == SPECIALS
    assert [tok.index[s] for s in SPECIALS] == [0, 1, 2, 3]


def test_tokenize_splits_punctuation_and_lowercases():
    assert tokenize("A Bar, tight ARMS.") == ["a", "bar", ",", "tight", "arms", "."]
    assert tokenize("an edge-on disk") == ["an", "edge-on", "disk"]


def test_vocabulary_order_is_frequency_then_alphabetical_and_deterministic():
    tok = Tokenizer.fit(["b a c", "a b", "a", "d d"])
    # counts: a=3, b=2, d=2, c=1 → ties (b, d) alphabetical
    assert tok.tokens[4:] == ("a", "b", "d", "c")
    shuffled = Tokenizer.fit(list(reversed(["b a c", "a b", "a", "d d"])))
    assert shuffled.tokens == tok.tokens
    assert Tokenizer.fit(CAPTIONS).tokens == Tokenizer.fit(CAPTIONS).tokens
    assert Tokenizer.fit(["b a c", "a b", "a", "d d"], min_count=2).tokens[4:] == ("a", "b", "d")


def test_encode_layout_and_decode_round_trip():
    tok = Tokenizer.fit(CAPTIONS)
    ids = tok.encode(CAPTIONS, max_len=20)
    assert ids.dtype == np.int32 and ids.shape == (len(CAPTIONS), 20)
    lengths = tok.lengths(CAPTIONS)
    for row, n in zip(ids, lengths):
        assert row[0] == BOS_ID and row[n - 1] == EOS_ID
        assert (row[n:] == PAD_ID).all() and (row[1 : n - 1] > UNK_ID).all()
    assert lengths[0] == 16  # 12 words + "," + "." + <bos> + <eos>
    assert tok.decode(ids) == CAPTIONS
    assert tok.decode(ids[0]) == CAPTIONS[:1]


def test_decode_stops_at_eos_and_skips_bos():
    tok = Tokenizer.fit(["a bar."])
    a, bar, dot = tok.index["a"], tok.index["bar"], tok.index["."]
    assert tok.decode([[BOS_ID, a, bar, dot, EOS_ID, a, a]]) == ["a bar."]
    assert tok.decode([[BOS_ID, a, PAD_ID, bar]]) == ["a"]
    assert tok.decode([[BOS_ID, a, 999, EOS_ID]]) == ["a <unk>"]


def test_unknown_words_map_to_unk():
    tok = Tokenizer.fit(["a spiral galaxy."])
    ids = tok.encode(["a barred spiral galaxy."], max_len=8)
    assert ids[0, 2] == UNK_ID
    assert tok.decode(ids) == ["a <unk> spiral galaxy."]


def test_truncation_raises_by_default_and_truncates_on_request():
    tok = Tokenizer.fit(CAPTIONS)
    with pytest.raises(ValueError, match=r"3 of 4 captions need more than max_len=10.*row 0, 16 ids"):
        tok.encode(CAPTIONS, max_len=10)
    ids = tok.encode(CAPTIONS, max_len=10, truncate=True)
    assert ids.shape == (4, 10)
    assert ids[0, -1] == EOS_ID and ids[0, 0] == BOS_ID
    assert tok.decode(ids)[0] == "a spiral galaxy with a central bar,"  # 8 tokens
    assert tok.decode(ids)[2] == CAPTIONS[2]  # short enough: untouched
    assert (tok.lengths(CAPTIONS) > 10).tolist() == [True, True, False, True]
    assert tok.encode(CAPTIONS[1:2], max_len=int(tok.lengths(CAPTIONS[1:2])[0])).shape == (1, 11)


def test_bad_inputs():
    tok = Tokenizer.fit(CAPTIONS)
    with pytest.raises(TypeError, match="one str"):
        tok.encode("a round elliptical galaxy.", max_len=10)
    with pytest.raises(ValueError, match="max_len"):
        tok.encode(CAPTIONS, max_len=2)
    with pytest.raises(ValueError, match="must start with"):
        Tokenizer(["a", "<pad>", "<bos>", "<eos>", "<unk>"])


def test_dict_round_trip_through_json():
    tok = Tokenizer.fit(CAPTIONS)
    data = json.loads(json.dumps(tok.to_dict()))
    back = Tokenizer.from_dict(data)
    assert back == tok and back.vocab_size == len(tok)
    np.testing.assert_array_equal(back.encode(CAPTIONS, 20), tok.encode(CAPTIONS, 20))
    with pytest.raises(ValueError, match="format"):
        Tokenizer.from_dict({"format": 99, "tokens": list(tok.tokens)})


def _scripted_step(tokens: list[list[int]]):
    """A decoder step that answers position p of row r with ``tokens[r][p]`` (as one-hot logits)."""
    calls = []

    def step(token, h, c):
        pos = len(calls)
        calls.append(token[:, 0].tolist())
        logits = np.zeros((len(tokens), 8), np.float32)
        logits[np.arange(len(tokens)), [row[pos] for row in tokens]] = 1.0
        return logits, h, c

    return step, calls


@pytest.mark.parametrize("answers, max_len, want, steps", [
    # both rows end: the rest is <pad> and decoding stops once every row has ended
    ([[5, EOS_ID, 7], [6, 7, EOS_ID]], 6, [[BOS_ID, 5, EOS_ID, PAD_ID, PAD_ID, PAD_ID],
                                           [BOS_ID, 6, 7, EOS_ID, PAD_ID, PAD_ID]], 3),
    # no <eos> before max_len: the row is cut there
    ([[5, 6, 7]], 3, [[BOS_ID, 5, 6]], 2),
    # a predicted <pad> ends a row as <eos> does
    ([[PAD_ID, 5]], 4, [[BOS_ID, PAD_ID, PAD_ID, PAD_ID]], 1),
])
def test_greedy_caption_ids_encodes_once_and_steps_until_every_row_ends(answers, max_len, want, steps):
    step, calls = _scripted_step(answers)
    encoded = []

    def encode(x):
        encoded.append(x.shape)
        return np.zeros((len(x), 2), np.float32), np.zeros((len(x), 2), np.float32)

    ids = greedy_caption_ids(encode, step, np.zeros((len(answers), 4, 4, 1)), max_len)
    assert ids.dtype == np.int32 and ids.tolist() == want
    assert encoded == [(len(answers), 4, 4, 1)] and len(calls) == steps
    assert calls[0] == [BOS_ID] * len(answers)  # each step is fed the previous arg-max


@pytest.mark.parametrize("images, max_len, error", [
    (np.zeros((4, 4, 1)), 5, "batch of images"),
    (np.zeros((1, 4, 4, 1)), 1, "max_len"),
])
def test_greedy_caption_ids_refuses_before_encoding(images, max_len, error):
    def encode(x):
        raise AssertionError("the encoder ran")

    with pytest.raises(ValueError, match=error):
        greedy_caption_ids(encode, None, images, max_len)


def test_greedy_caption_ids_of_no_images_is_an_empty_batch():
    ids = greedy_caption_ids(None, None, np.zeros((0, 4, 4, 1)), 5)
    assert ids.shape == (0, 5) and ids.dtype == np.int32
