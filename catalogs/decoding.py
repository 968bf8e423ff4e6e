"""Streaming model inputs for catalog rows: decode on a small thread pool, batch in row order.

:func:`iter_model_inputs` turns a run of catalog rows (their ``image_path`` values and the row
number of the first) into batches of float32 NHWC pixels in [0, 1], exactly as training sees
them (both go through :func:`decode_row`, i.e. :func:`catalogs.inputs.model_input`). Each batch
covers the next ``batch_size`` rows; rows whose image cannot be used are left out of its pixels
and reported in its ``failures``, so every row appears in exactly one of the two.

Memory stays flat whatever the number of rows: at most ``max_in_flight`` images are decoded
ahead of the consumer (each held as a small ``size``×``size`` uint8 array once decoded), and only
the batch being handed out exists as float32.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from catalogs.contract import resolve_image_path
from catalogs.errors import PathEscapeError
from catalogs.imaging import PATH_ESCAPE, UNREADABLE, ImageError
from catalogs.inputs import ImageSpec, ModelInput, model_input

# The ``stage`` of a failure before any model runs: the object's input could not be prepared.
STAGE_INPUT = "input"
BATCH_SIZE = 64  # default images per batch: one onnxruntime run at annotation


@dataclass(frozen=True)
class Failure:
    """One row that could not become a model input; ``error_type`` is an imaging error type."""

    row: int
    stage: str
    error_type: str
    message: str


@dataclass(frozen=True)
class Batch:
    """The decoded rows of one run of ``batch_size`` consecutive catalog rows.

    ``rows[i]`` is the catalog row number of ``pixels[i]`` (ascending), ``source_sizes[i]`` its
    cutout's stored ``(width, height)``, ``crops[i]`` the fraction of its shorter side the input
    covers and ``notes[i]`` its conversion note or ``None``; ``failures`` holds the other rows of
    the run, in row order."""

    rows: np.ndarray  # int64 (n,)
    pixels: np.ndarray  # float32 (n, size, size, 3) in [0, 1]
    source_sizes: np.ndarray  # int64 (n, 2)
    notes: tuple[str | None, ...]
    failures: tuple[Failure, ...]
    crops: np.ndarray  # float64 (n,)

    def select(self, keep: np.ndarray) -> "Batch":
        """The decoded rows where ``keep`` (n,) is true (the failures stay as they are)."""
        return Batch(self.rows[keep], self.pixels[keep], self.source_sizes[keep],
                     tuple(n for n, k in zip(self.notes, keep) if k), self.failures, self.crops[keep])


def decode_row(root: Path, image_path: str, spec: ImageSpec) -> ModelInput:
    """The model input of one catalog row (its ``image_path`` relative to ``root``), or
    :class:`ImageError`: a path leaving the root is ``path_escape``, one that cannot be resolved
    (a symlink loop) ``unreadable``."""
    try:
        path = resolve_image_path(root, image_path)
    except PathEscapeError as exc:
        raise ImageError(PATH_ESCAPE, str(exc)) from None
    except (RuntimeError, OSError) as exc:  # a symlink loop, an unreadable folder on the way
        raise ImageError(UNREADABLE, f"cannot resolve {image_path!r} under {root}: {exc}") from None
    return model_input(path, spec)


def to_model_floats(pixels: np.ndarray, spec: ImageSpec) -> np.ndarray:
    """uint8 pixels → float32 ``x · scale``, computed in float32 as the training pipeline does
    (``tf.cast(x, float32) * float32(scale)``), so both give the same bits."""
    return pixels.astype(np.float32) * np.float32(spec.scale)


def iter_model_inputs(root: Path, image_paths: Sequence[str], spec: ImageSpec, *, start_row: int = 0,
                      batch_size: int = 64, workers: int = 2, max_in_flight: int | None = None) -> Iterator[Batch]:
    """Batches of model inputs for ``image_paths`` (catalog rows ``start_row …``), in row order.

    ``workers`` threads decode (Pillow and astropy release the GIL while decoding); at most
    ``max_in_flight`` rows (default ``2 × batch_size``) are decoded ahead of the consumer.
    Per-row problems become :class:`Failure`; anything else (a bug, ``MemoryError``) propagates.
    """
    if batch_size < 1 or workers < 1:
        raise ValueError(f"batch_size and workers must be ≥ 1, got {batch_size} and {workers}")
    ahead = 2 * batch_size if max_in_flight is None else max_in_flight
    if ahead < 1:
        raise ValueError(f"max_in_flight must be ≥ 1, got {max_in_flight}")
    root = Path(root)
    todo = iter(enumerate(image_paths, start=start_row))
    pending: deque[tuple[int, Future]] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="morphcat-decode") as pool:

        def top_up() -> None:
            while len(pending) < ahead:
                item = next(todo, None)
                if item is None:
                    return
                row, rel = item
                pending.append((row, pool.submit(_decode_or_fail, root, rel, spec, row)))

        try:
            top_up()
            while pending:
                done: list[tuple[int, ModelInput | Failure]] = []
                while pending and len(done) < batch_size:
                    row, future = pending.popleft()
                    done.append((row, future.result()))
                    top_up()
                yield _batch(done, spec)
        finally:  # the consumer stopped early (or failed): drop what was queued
            for _, future in pending:
                future.cancel()


def _decode_or_fail(root: Path, image_path: str, spec: ImageSpec, row: int) -> ModelInput | Failure:
    try:
        return decode_row(root, image_path, spec)
    except ImageError as exc:
        return Failure(row, STAGE_INPUT, exc.reason, exc.message)


def _batch(done: list[tuple[int, ModelInput | Failure]], spec: ImageSpec) -> Batch:
    good = [(row, r) for row, r in done if isinstance(r, ModelInput)]
    if good:
        pixels = to_model_floats(np.stack([r.pixels for _, r in good]), spec)
    else:
        pixels = np.zeros((0, spec.size, spec.size, 3), np.float32)
    return Batch(
        rows=np.array([row for row, _ in good], dtype=np.int64),
        pixels=pixels,
        source_sizes=np.array([r.source_size for _, r in good], dtype=np.int64).reshape(-1, 2),
        notes=tuple(r.note for _, r in good),
        failures=tuple(r for _, r in done if isinstance(r, Failure)),
        crops=np.array([r.crop for _, r in good], dtype=np.float64),
    )
