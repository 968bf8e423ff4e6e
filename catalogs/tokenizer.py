"""Word-level tokenizer for template captions (its vocabulary is stored in the sidecar JSON and
the bundle), and greedy decoding of token ids from any captioner's encoder and step functions.

Tokenisation: lower-case, ``,`` and ``.`` become tokens of their own, then split on whitespace
(hyphenated words such as ``edge-on`` stay one token). Decoding joins tokens with spaces and
removes the space before ``,`` and ``.``, so ``decode(encode([c])) == [c]`` for any lower-case
caption with single spaces and no space before punctuation (all template captions).

Special ids: ``<pad>`` = 0, ``<bos>`` = 1, ``<eos>`` = 2, ``<unk>`` = 3.

Truncation policy: :meth:`Tokenizer.encode` RAISES ``ValueError`` when a caption needs more than
``max_len`` ids (``<bos>`` + words + ``<eos>``), naming how many and the first one. With
``truncate=True`` it instead keeps ``<bos>`` and the first ``max_len - 2`` words and still ends
the row with ``<eos>``; :meth:`Tokenizer.lengths` tells which captions that affects
(``lengths(c) > max_len``).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

import numpy as np

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
PUNCTUATION = (",", ".")
FORMAT_VERSION = 1

_SPLIT_PUNCT = re.compile(r"([,.])")
_SPACE_BEFORE_PUNCT = re.compile(r" ([,.])")


def tokenize(caption: str) -> list[str]:
    """``"A bar, tight arms."`` → ``["a", "bar", ",", "tight", "arms", "."]``."""
    if not isinstance(caption, str):
        raise TypeError(f"a caption must be a str, got {type(caption).__name__}")
    return _SPLIT_PUNCT.sub(r" \1 ", caption.lower()).split()


def detokenize(tokens: Iterable[str]) -> str:
    return _SPACE_BEFORE_PUNCT.sub(r"\1", " ".join(tokens))


def _as_captions(captions) -> list[str]:
    if isinstance(captions, str):
        raise TypeError("expected a sequence of captions, got one str (wrap it in a list)")
    return list(captions)


class Tokenizer:
    """Vocabulary = the four special tokens, then words by descending count, ties alphabetically."""

    def __init__(self, tokens: Sequence[str]):
        tokens = list(tokens)
        if tuple(tokens[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a vocabulary must start with {list(SPECIALS)}, got {tokens[:4]}")
        if len(set(tokens)) != len(tokens):
            raise ValueError("duplicate tokens in vocabulary")
        self.tokens: tuple[str, ...] = tuple(tokens)
        self.index: dict[str, int] = {t: i for i, t in enumerate(self.tokens)}

    # -- construction ----------------------------------------------------------------------------

    @classmethod
    def fit(cls, captions: Iterable[str], min_count: int = 1) -> "Tokenizer":
        if min_count < 1:
            raise ValueError(f"min_count must be ≥ 1, got {min_count}")
        counts = Counter(t for c in _as_captions(captions) for t in tokenize(c))
        for special in SPECIALS:
            counts.pop(special, None)
        words = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
        return cls(SPECIALS + tuple(words))

    def to_dict(self) -> dict:
        return {"format": FORMAT_VERSION, "tokens": list(self.tokens)}

    @classmethod
    def from_dict(cls, data: dict) -> "Tokenizer":
        version = data.get("format")
        if version != FORMAT_VERSION:
            raise ValueError(f"unsupported tokenizer format {version!r} (expected {FORMAT_VERSION})")
        return cls(data["tokens"])

    # -- properties ------------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def __len__(self) -> int:
        return len(self.tokens)

    def __eq__(self, other) -> bool:
        return isinstance(other, Tokenizer) and self.tokens == other.tokens

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size})"

    # -- encoding / decoding ---------------------------------------------------------------------

    def lengths(self, captions: Iterable[str]) -> np.ndarray:
        """Ids each caption needs including ``<bos>`` and ``<eos>`` (int64, (N,))."""
        return np.array([len(tokenize(c)) + 2 for c in _as_captions(captions)], dtype=np.int64)

    def encode(self, captions: Iterable[str], max_len: int, *, truncate: bool = False) -> np.ndarray:
        """Captions → int32 (N, max_len): ``<bos> words <eos> <pad>…``; unknown words → ``<unk>``.

        Raises ``ValueError`` if a caption does not fit, unless ``truncate=True`` (see module doc).
        """
        captions = _as_captions(captions)
        if max_len < 3:
            raise ValueError(f"max_len must be ≥ 3 (<bos>, a word, <eos>), got {max_len}")
        out = np.full((len(captions), max_len), PAD_ID, dtype=np.int32)
        too_long = []
        for row, caption in enumerate(captions):
            ids = [self.index.get(t, UNK_ID) for t in tokenize(caption)]
            if len(ids) + 2 > max_len:
                too_long.append(row)
                ids = ids[: max_len - 2]
            out[row, : len(ids) + 2] = [BOS_ID, *ids, EOS_ID]
        if too_long and not truncate:
            first = too_long[0]
            raise ValueError(
                f"{len(too_long)} of {len(captions)} captions need more than max_len={max_len} ids "
                f"(with <bos>/<eos>); first: row {first}, {len(tokenize(captions[first])) + 2} ids: "
                f"{captions[first]!r}. Raise max_len or pass truncate=True."
            )
        return out

    def decode(self, ids) -> list[str]:
        """Id rows (N, T) (or one row (T,)) → captions. A leading ``<bos>`` is skipped; each row
        stops at its first ``<eos>`` (or ``<pad>``); unknown ids read as ``<unk>``."""
        arr = np.asarray(ids)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2:
            raise ValueError(f"expected ids of shape (N, T), got {arr.shape}")
        captions = []
        for row in arr.tolist():
            words = []
            for pos, i in enumerate(row):
                i = int(i)
                if i in (EOS_ID, PAD_ID):
                    break
                if i == BOS_ID and pos == 0:
                    continue
                words.append(self.tokens[i] if 0 <= i < len(self.tokens) else UNK)
            captions.append(detokenize(words))
        return captions


def greedy_ids(step: Callable, h: np.ndarray, c: np.ndarray, max_len: int) -> np.ndarray:
    """Greedy caption token ids (N, max_len) int32 from the initial LSTM state ``h``, ``c``
    (N, units): ``<bos>``, then each step's arg-max token; after a row's ``<eos>`` (or a
    predicted ``<pad>``) the rest of the row is ``<pad>``, and decoding stops as soon as every row
    has finished. ``step(token (N, 1) int32, h, c) → (logits (N, vocab), h, c)`` is the captioner's
    decoder step in any runtime: Keras at training, onnxruntime at annotation, so both decode by
    the same rules."""
    if max_len < 2:
        raise ValueError(f"max_len must be ≥ 2, got {max_len}")
    n = h.shape[0]
    out = np.full((n, max_len), PAD_ID, dtype=np.int32)
    out[:, 0] = BOS_ID
    if n == 0:
        return out
    token = np.full((n, 1), BOS_ID, dtype=np.int32)
    done = np.zeros(n, dtype=bool)
    for pos in range(1, max_len):
        logits, h, c = step(token, h, c)
        nxt = np.asarray(logits).argmax(axis=-1).astype(np.int32)
        out[:, pos] = np.where(done, PAD_ID, nxt)
        done |= (nxt == EOS_ID) | (nxt == PAD_ID)  # a predicted <pad> also ends the caption
        if done.all():
            break
        token = nxt[:, None]
    return out


def greedy_caption_ids(encode: Callable, step: Callable, images, max_len: int) -> np.ndarray:
    """Greedy caption token ids (N, max_len) int32 for a batch of images (N, H, W, C): the
    captioner's ``encode(images) → (h, c)`` runs once per batch, then :func:`greedy_ids` runs
    ``step`` once per position. Both runtimes call this (Keras at training and as the export's
    parity reference, onnxruntime at annotation), so their captions differ only by numerics."""
    images = np.ascontiguousarray(images, dtype=np.float32)
    if images.ndim != 4:
        raise ValueError(f"expected a batch of images (N, H, W, C), got shape {images.shape}")
    if max_len < 2:  # before the encoder runs for nothing
        raise ValueError(f"max_len must be ≥ 2, got {max_len}")
    if images.shape[0] == 0:
        return greedy_ids(step, np.zeros((0, 1), np.float32), np.zeros((0, 1), np.float32), max_len)
    h, c = encode(images)
    return greedy_ids(step, h, c, max_len)
