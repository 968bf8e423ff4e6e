"""The seed project's captioning, reproduced for the benchmark: for every image the captioner is
loaded from disk again, and every next token re-runs the whole teacher-forcing model over the
image and the full prefix with ``model.predict`` (no state carried between tokens)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from catalogs.tokenizer import BOS_ID, EOS_ID, PAD_ID, Tokenizer
from models.artifacts import load_trained


def seed_caption(models_dir: Path, image: np.ndarray) -> str:
    model, sidecar = load_trained(models_dir, "captioner")  # reloaded per image, as the seed did
    tokens = [BOS_ID]
    for _ in range(int(sidecar["max_len"]) - 1):
        logits = model.predict([image[None], np.array([tokens], dtype=np.int32)], verbose=0)
        nxt = int(logits[0, -1].argmax())
        tokens.append(nxt)
        if nxt in (EOS_ID, PAD_ID):
            break
    return Tokenizer.from_dict(sidecar["tokenizer"]).decode(np.array([tokens], dtype=np.int32))[0]


def seed_seconds_per_image(models_dir: Path, images: np.ndarray) -> tuple[float, list[str]]:
    """Median seconds per image over ``images`` (float32 model inputs), and the captions."""
    times, captions = [], []
    for image in images:
        start = time.perf_counter()
        captions.append(seed_caption(models_dir, image))
        times.append(time.perf_counter() - start)
    return float(np.median(times)), captions
