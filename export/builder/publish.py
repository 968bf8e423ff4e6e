"""Writing a model bundle: hash the files into ``bundle.json`` (``export.serve.bundle`` defines
the format) and publish the folder in one move, so a failed export never leaves a half-written
bundle and the previous one stays until the new one is complete."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from export.builder.errors import ExportError
from export.serve.bundle import BUNDLE_FORMAT, MANIFEST, bundle_id, sha256_file


def file_records(folder: Path, names: list[str]) -> dict[str, dict]:
    return {n: {"sha256": sha256_file(folder / n), "bytes": (folder / n).stat().st_size} for n in sorted(names)}


def write_manifest(folder: Path, manifest: dict, names: list[str]) -> dict:
    """Hash ``names`` (files in ``folder``), stamp format, files and bundle id, write bundle.json."""
    files = file_records(Path(folder), names)
    full = {"format": BUNDLE_FORMAT, "bundle_id": bundle_id({n: r["sha256"] for n, r in files.items()}),
            **manifest, "files": files}
    (Path(folder) / MANIFEST).write_text(json.dumps(full, indent=2, sort_keys=True) + "\n")
    return full


def check_out(out: Path) -> None:
    """``out`` may be absent, empty or a bundle (replaced); anything else is a user's folder,
    never deleted."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST).is_file())):
        raise ExportError(f"{out} exists and is not a morphcat bundle; choose another `out`")


def prepare_out(out: Path) -> Path:
    """A fresh staging folder beside ``out`` (checked by :func:`check_out`)."""
    out = Path(out)
    check_out(out)
    staging = out.parent / f".{out.name}.partial"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    return staging


def publish(staging: Path, out: Path) -> None:
    """Replace ``out`` by the finished ``staging`` folder: a failed export never leaves a
    half-written bundle behind, and the previous one stays until the new one is complete."""
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
