"""Writing a file whole or not at all: a command stopped mid-write (Ctrl-C, SIGTERM, a crash)
leaves the previous file, or none, at the final name, never half of one."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` (same folder, so the rename is atomic; same suffix, for
    writers that pick the format by it) that replaces ``path`` when the block ends without an
    exception and is removed when it does not. Only a SIGKILL mid-write leaves it: hidden,
    ``.NAME.PID.partial.SUFFIX``."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.partial{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> Path:
    """``Path(path).write_text(text)`` (UTF-8), whole or not at all."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
