"""The annotation output folder: layout, run identity, shard plan, atomic shard writes, resume.

Layout (the folder names are part of the public contract of ``catalogs.outputs``)::

    OUT/_morphcat_output.json                         the manifest: catalog fingerprint, runs
    OUT/.staging/                                     files being written
    OUT/predictions/run=<run_id>/shard-00042.parquet
    OUT/errors/run=<run_id>/shard-00042.parquet

``run=<run_id>`` is a hive-style folder (``pl.scan_parquet("OUT/predictions/")`` adds a ``run``
column); shard files are not partitions, so they are plainly named, zero-padded to 5 digits so
that name order is row order. ``pl.scan_parquet("OUT/predictions/**/*.parquet")`` reads every
run: filter on ``run_id`` (or scan one ``run=`` folder) to read one.

**Runs.** A run is one catalog annotated by one bundle with one shard plan:
``run_id = "r" + 12 hex digits`` of a hash of the catalog's rows fingerprint, the bundle id, the
shard size and any option that changes rows. The letter keeps hive inference from reading an
all-digit id as an integer. Rerunning the same thing finds the same run and resumes it; another
bundle gets another run folder, never mixing rows. One folder holds one catalog: the manifest
records its fingerprint (object ids, image paths, ra, dec, in row order: what the rows are made
of) and another catalog is refused before any work.

**Exactly once.** A shard's two files are written to temporary files in ``OUT/.staging/``
(``<table>-<run_id>-shard-00042.parquet.tmp-<pid>-<random>``), fsynced, then moved to their
final names with ``os.replace`` (atomic: same file system): errors first, predictions last. The
predictions file is the commit point: a shard is finished when both files exist, and a kill -9
at any instant leaves every shard either finished or without a predictions file. Temporary files
live outside ``predictions/`` and ``errors/`` because polars reads dot-files too: a glob
``**/*.parquet`` matches ``.x.parquet``, and scanning a folder fails outright on a file with
another extension. What a kill can leave behind (temporary files, an errors file whose
predictions file never arrived) is removed by :func:`discard_incomplete`, which a resumed run
calls before writing. Files are deterministic (no clock or pid inside), so a resumed run writes
the same bytes as an uninterrupted one.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from catalogs.errors import MorphcatError
from catalogs.fingerprints import rows_fingerprint
from catalogs.outputs import ERRORS, ERRORS_SCHEMA, PREDICTIONS, predictions_class_names, with_output_metadata

MANIFEST_NAME = "_morphcat_output.json"
MANIFEST_VERSION = 1
_LOCK_NAME = ".morphcat.lock"
_STAGING = ".staging"
_MANIFEST_TEMP = f".{MANIFEST_NAME}.tmp"  # written under the lock only, so one name is enough
_OUR_NAMES = {MANIFEST_NAME, _LOCK_NAME, _STAGING, PREDICTIONS, ERRORS}
MAX_SHARDS = 100_000  # 5-digit shard names; more shards than this means shards far too small
_SHARD_FILE = re.compile(r"^shard-(\d{5})\.parquet$")


class OutputFolderError(MorphcatError):
    """The output folder cannot take this run: it belongs to another catalog, or is not ours."""


SHARD_SIZE = 1000  # default catalog rows per shard: the unit of work, of resume and of one output file


@dataclass(frozen=True)
class Shard:
    """Catalog rows ``[start, stop)``, written as shard file number ``index``."""

    index: int
    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start

    @property
    def file_name(self) -> str:
        return f"shard-{self.index:05d}.parquet"


@dataclass(frozen=True)
class ShardFiles:
    predictions: Path
    errors: Path


@dataclass(frozen=True)
class RunPlan:
    """One run in an output folder, as :func:`prepare_run` registered it."""

    out: Path
    run_id: str
    bundle_id: str
    shards: tuple[Shard, ...]


@dataclass(frozen=True)
class RowAccount:
    """Rows of a run against its catalog: ``complete`` when every shard is finished and holds
    exactly its rows, split between the two tables."""

    catalog_rows: int
    predictions: int
    errors: int
    missing_shards: tuple[int, ...]  # not finished
    miscounted_shards: tuple[int, ...]  # finished, but predictions + errors ≠ shard length
    unexpected_files: tuple[Path, ...]  # shard files outside the plan

    @property
    def complete(self) -> bool:
        return (not self.missing_shards and not self.miscounted_shards and not self.unexpected_files
                and self.predictions + self.errors == self.catalog_rows)


def plan_shards(n_rows: int, shard_size: int) -> list[Shard]:
    """Consecutive shards of ``shard_size`` rows (the last may be shorter), numbered from 0."""
    if shard_size < 1:
        raise ValueError(f"shard size must be ≥ 1, got {shard_size}")
    if n_rows < 0:
        raise ValueError(f"row count must be ≥ 0, got {n_rows}")
    count = -(-n_rows // shard_size)
    if count > MAX_SHARDS:
        raise ValueError(f"{n_rows} rows in shards of {shard_size} make {count} shards, more than "
                         f"{MAX_SHARDS}; use a larger shard size")
    return [Shard(i, i * shard_size, min((i + 1) * shard_size, n_rows)) for i in range(count)]


def run_folder(out: Path, table: str, run_id: str) -> Path:
    """``OUT/<table>/run=<run_id>``, ``table`` being ``predictions`` or ``errors``."""
    if table not in (PREDICTIONS, ERRORS):
        raise ValueError(f"unknown output table {table!r}")
    return Path(out) / table / f"run={run_id}"


def shard_files(out: Path, run_id: str, shard: Shard) -> ShardFiles:
    return ShardFiles(run_folder(out, PREDICTIONS, run_id) / shard.file_name,
                      run_folder(out, ERRORS, run_id) / shard.file_name)


def make_run_id(fingerprint: str, bundle_id: str, shard_size: int, options: Mapping | None = None) -> str:
    """``"r"`` + 12 hex digits identifying the run (see the module docstring)."""
    key = json.dumps({"catalog": fingerprint, "bundle": bundle_id, "shard_size": shard_size,
                      "options": dict(options or {})}, sort_keys=True)
    return "r" + hashlib.blake2b(key.encode(), digest_size=6).hexdigest()


def prepare_run(out: Path, table: pa.Table, bundle_id: str, shard_size: int, options: Mapping | None = None,
                source: str = "") -> RunPlan:
    """Register the run of ``table`` (a catalog's table) × ``bundle_id`` in ``out``, creating the
    folder or checking that it belongs to this catalog, and return its plan. ``options``: the
    settings that change rows (JSON values); ``source``: where the catalog came from, for messages.
    Raises :class:`OutputFolderError` before anything is written to a folder that is not ours."""
    out = Path(out)
    fingerprint = rows_fingerprint(table)
    run_id = make_run_id(fingerprint, bundle_id, shard_size, options)
    shards = tuple(plan_shards(table.num_rows, shard_size))
    entry = {"bundle_id": bundle_id, "shard_size": shard_size, "shards": len(shards),
             "options": dict(options or {})}
    if out.exists() and not out.is_dir():
        raise OutputFolderError(f"output folder {out} is a file")
    if out.is_dir() and not (out / MANIFEST_NAME).exists():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in _OUR_NAMES | {_MANIFEST_TEMP})
        if foreign:
            raise OutputFolderError(f"output folder {out} is not empty and is not a morphcat output folder "
                                    f"(no {MANIFEST_NAME}; it holds {', '.join(foreign[:3])}…); "
                                    "choose a new or empty folder")
    out.mkdir(parents=True, exist_ok=True)
    with open(out / _LOCK_NAME, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # runs starting together must not lose each other's entry
        manifest = _read_manifest(out)
        if manifest is None:
            manifest = {"version": MANIFEST_VERSION, "catalog": {"fingerprint": fingerprint,
                        "rows": table.num_rows, "source": source}, "runs": {}}
        elif manifest["catalog"]["fingerprint"] != fingerprint:
            old = manifest["catalog"]
            raise OutputFolderError(
                f"output folder {out} holds the annotations of another catalog ({old['rows']} rows from "
                f"{old['source'] or 'an unnamed source'}, fingerprint {old['fingerprint']}); this one "
                f"({table.num_rows} rows from {source or 'an unnamed source'}) has fingerprint {fingerprint}. "
                "Write to another `out` folder, or delete this one to start over")
        known = manifest["runs"].get(run_id)
        if known is None:
            manifest["runs"][run_id] = entry
            _write_manifest(out, manifest)
        elif known != entry:
            raise OutputFolderError(f"run {run_id} in {out} was registered with {known}, not {entry}")
    for folder in (run_folder(out, PREDICTIONS, run_id), run_folder(out, ERRORS, run_id), out / _STAGING):
        folder.mkdir(parents=True, exist_ok=True)
    return RunPlan(out, run_id, bundle_id, shards)


def write_shard(plan: RunPlan, shard: Shard, predictions: pa.Table, errors: pa.Table) -> ShardFiles:
    """Write one shard's two tables atomically (see the module docstring), after checking that
    they are this run's and hold exactly the shard's rows between them."""
    predictions_class_names(predictions.schema)  # raises unless it is a predictions table
    if not errors.schema.remove_metadata().equals(ERRORS_SCHEMA):
        raise ValueError("errors table does not follow catalogs.outputs.ERRORS_SCHEMA")
    for name, table in ((PREDICTIONS, predictions), (ERRORS, errors)):
        for column, value in (("run_id", plan.run_id), ("bundle_id", plan.bundle_id)):
            if table.num_rows and not pc.all(pc.equal(table.column(column), value)).as_py():
                raise ValueError(f"{name} rows of shard {shard.index} are not all {column} {value!r}")
    ids = pa.concat_arrays([predictions.column("object_id").combine_chunks(),
                            errors.column("object_id").combine_chunks()])
    if len(ids) != len(shard) or pc.count_distinct(ids).as_py() != len(shard):
        raise ValueError(f"shard {shard.index} covers {len(shard)} rows but its tables hold {len(ids)} rows "
                         f"({pc.count_distinct(ids).as_py()} distinct object ids)")
    meta = {"index": shard.index, "start": shard.start, "stop": shard.stop}
    files = shard_files(plan.out, plan.run_id, shard)
    temps = {}
    for name, table, final in ((ERRORS, errors, files.errors), (PREDICTIONS, predictions, files.predictions)):
        temp = plan.out / _STAGING / f"{name}-{plan.run_id}-{final.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
        with open(temp, "wb") as fh:
            pq.write_table(with_output_metadata(table, name, plan.bundle_id, plan.run_id, meta), fh)
            fh.flush()
            os.fsync(fh.fileno())
        temps[final] = temp
    for final in (files.errors, files.predictions):  # predictions last: the commit point
        os.replace(temps[final], final)
        _fsync_folder(final.parent)
    return files


def finished_shards(out: Path, run_id: str) -> set[int]:
    """Indices of the shards of ``run_id`` whose two files are in place."""
    return _shard_indices(run_folder(out, PREDICTIONS, run_id)) & _shard_indices(run_folder(out, ERRORS, run_id))


def discard_incomplete(out: Path, run_id: str) -> list[Path]:
    """Remove what an interrupted writer of ``run_id`` left (temporary files, an errors file
    without its predictions file); returns what was removed. Call it before writing the run,
    while no other process writes it."""
    staging = Path(out) / _STAGING
    prefixes = tuple(f"{name}-{run_id}-" for name in (PREDICTIONS, ERRORS))
    removed = [p for p in staging.iterdir() if p.name.startswith(prefixes)] if staging.is_dir() else []
    done = _shard_indices(run_folder(out, PREDICTIONS, run_id))
    errors_folder = run_folder(out, ERRORS, run_id)
    removed += [errors_folder / f"shard-{i:05d}.parquet" for i in _shard_indices(errors_folder) - done]
    for path in removed:
        path.unlink()
    return removed


def account_rows(out: Path, run_id: str) -> RowAccount:
    """Count the rows of ``run_id`` in both tables (from the Parquet footers) and check them
    against the catalog rows and shard plan recorded in the manifest."""
    manifest = _read_manifest(Path(out))
    if manifest is None or run_id not in manifest["runs"]:
        raise OutputFolderError(f"{out} has no run {run_id}")
    rows = manifest["catalog"]["rows"]
    shards = plan_shards(rows, manifest["runs"][run_id]["shard_size"])
    done = finished_shards(out, run_id)
    counts = {PREDICTIONS: 0, ERRORS: 0}
    miscounted = []
    for shard in shards:
        if shard.index not in done:
            continue
        files = shard_files(out, run_id, shard)
        n = {name: pq.ParquetFile(path).metadata.num_rows
             for name, path in ((PREDICTIONS, files.predictions), (ERRORS, files.errors))}
        counts[PREDICTIONS] += n[PREDICTIONS]
        counts[ERRORS] += n[ERRORS]
        if n[PREDICTIONS] + n[ERRORS] != len(shard):
            miscounted.append(shard.index)
    planned = {s.index for s in shards}
    unexpected = [run_folder(out, name, run_id) / f"shard-{i:05d}.parquet"
                  for name in (PREDICTIONS, ERRORS) for i in sorted(_shard_indices(run_folder(out, name, run_id)) - planned)]
    return RowAccount(rows, counts[PREDICTIONS], counts[ERRORS],
                      tuple(sorted(planned - done)), tuple(miscounted), tuple(unexpected))


def _shard_indices(folder: Path) -> set[int]:
    if not folder.is_dir():
        return set()
    return {int(m.group(1)) for p in folder.iterdir() if (m := _SHARD_FILE.match(p.name))}


def _read_manifest(out: Path) -> dict | None:
    path = out / MANIFEST_NAME
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
        ok = manifest.get("version") == MANIFEST_VERSION and "fingerprint" in manifest["catalog"]
    except (ValueError, KeyError, TypeError, AttributeError):
        ok = False
    if not ok:
        raise OutputFolderError(f"{path} is not a manifest this morphcat reads (version {MANIFEST_VERSION})")
    return manifest


def _write_manifest(out: Path, data: dict) -> None:
    path, temp = out / MANIFEST_NAME, out / _MANIFEST_TEMP
    with open(temp, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(temp, path)
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    """Make a rename durable: the folder entry, not only the file, must reach the disk."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
