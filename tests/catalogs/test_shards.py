"""catalogs.shards: shard plan, run identity, the output folder, atomic writes and resume."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from catalogs.fingerprints import rows_fingerprint
from catalogs.outputs import output_metadata
from catalogs.shards import (
    MANIFEST_NAME,
    OutputFolderError,
    account_rows,
    discard_incomplete,
    finished_shards,
    make_run_id,
    plan_shards,
    prepare_run,
    shard_files,
    write_shard,
)
from tests.catalogs.shard_rows import catalog, shard_tables, write_all

REPO = Path(__file__).resolve().parents[2]


def folder_bytes(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != ".morphcat.lock"}


@pytest.mark.parametrize("n, size, want", [
    (10, 3, [(0, 0, 3), (1, 3, 6), (2, 6, 9), (3, 9, 10)]),
    (9, 3, [(0, 0, 3), (1, 3, 6), (2, 6, 9)]),
    (2, 5, [(0, 0, 2)]),
    (0, 5, []),
])
def test_plan_shards(n, size, want):
    shards = plan_shards(n, size)
    assert [(s.index, s.start, s.stop) for s in shards] == want
    assert sum(len(s) for s in shards) == n
    assert [s.file_name for s in shards[:1]] == ["shard-00000.parquet"][: len(shards)]


def test_plan_shards_refuses_bad_sizes():
    with pytest.raises(ValueError):
        plan_shards(10, 0)
    with pytest.raises(ValueError, match="larger shard size"):
        plan_shards(200_001, 2)


def test_run_id_changes_with_everything_that_changes_rows():
    base = make_run_id("fp", "bundle", 100, {"ood_threshold": 0.5})
    assert base == make_run_id("fp", "bundle", 100, {"ood_threshold": 0.5})
    # The id is stable across versions (a rerun must find its run folder): "r" + 12 hex digits of
    # a BLAKE2b over the sorted JSON of what makes the rows.
    assert base == "ra458280e0f34"
    others = {make_run_id("fp2", "bundle", 100, {"ood_threshold": 0.5}),
              make_run_id("fp", "bundle2", 100, {"ood_threshold": 0.5}),
              make_run_id("fp", "bundle", 50, {"ood_threshold": 0.5}),
              make_run_id("fp", "bundle", 100, {"ood_threshold": 0.6})}
    assert base not in others and len(others) == 4


def test_fingerprint_follows_the_rows_not_the_labels_or_the_chunking():
    t = catalog()
    fp = rows_fingerprint(t)
    assert rows_fingerprint(t.set_column(3, "label", pa.array(["x"] * 10))) == fp
    assert rows_fingerprint(pa.Table.from_batches(t.to_batches(max_chunksize=3))) == fp
    assert rows_fingerprint(t.take(list(range(9, -1, -1)))) != fp  # row order defines the shards
    paths = t.column("image_path").to_pylist()
    assert rows_fingerprint(t.set_column(1, "image_path", pa.array(paths[:-1] + ["other.jpg"]))) != fp


def test_prepare_run_creates_and_reuses_one_folder_per_catalog(tmp_path):
    out, t = tmp_path / "out", catalog()
    plan = prepare_run(out, t, "bundle-a", 4, source="cat.parquet")
    manifest = (out / MANIFEST_NAME).read_bytes()
    again = prepare_run(out, t, "bundle-a", 4, source="cat.parquet")
    assert again == plan and (out / MANIFEST_NAME).read_bytes() == manifest
    other = prepare_run(out, t, "bundle-b", 4)
    assert other.run_id != plan.run_id
    runs = json.loads((out / MANIFEST_NAME).read_text())["runs"]
    assert runs[plan.run_id]["bundle_id"] == "bundle-a" and runs[other.run_id]["bundle_id"] == "bundle-b"
    assert (out / "predictions" / f"run={plan.run_id}").is_dir() and (out / "errors" / f"run={other.run_id}").is_dir()


def test_another_catalog_is_refused_before_anything_is_written(tmp_path):
    out = tmp_path / "out"
    prepare_run(out, catalog(10), "b", 4, source="first.parquet")
    before = folder_bytes(out)
    with pytest.raises(OutputFolderError, match="another catalog") as info:
        prepare_run(out, catalog(11), "b", 4, source="second.parquet")
    assert "first.parquet" in str(info.value) and "second.parquet" in str(info.value)
    assert folder_bytes(out) == before


@pytest.mark.parametrize("setup, match", [
    (lambda out: (out.mkdir(), (out / "holiday.jpg").write_bytes(b"x")), "not a morphcat output folder"),
    (lambda out: out.write_text("a file"), "is a file"),
    (lambda out: (out.mkdir(), (out / MANIFEST_NAME).write_text("{not json")), "not a manifest"),
])
def test_folders_that_are_not_ours_are_refused(tmp_path, setup, match):
    out = tmp_path / "out"
    setup(out)
    with pytest.raises(OutputFolderError, match=match):
        prepare_run(out, catalog(), "b", 4)


def test_written_shards_are_read_back_by_polars_with_their_metadata(tmp_path):
    out, t = tmp_path / "out", catalog(10)
    plan = prepare_run(out, t, "b", 4)
    write_all(plan, t)
    assert finished_shards(out, plan.run_id) == {0, 1, 2}
    preds = pl.scan_parquet(f"{out}/predictions/**/*.parquet").collect()
    errs = pl.scan_parquet(f"{out}/errors/**/*.parquet").collect()
    assert preds.height + errs.height == 10
    assert sorted(preds["object_id"].to_list() + errs["object_id"].to_list()) == t.column("object_id").to_pylist()
    assert pl.scan_parquet(f"{out}/predictions/").collect()["run"].unique().to_list() == [plan.run_id]
    meta = output_metadata(pq.read_schema(shard_files(out, plan.run_id, plan.shards[1]).predictions))
    assert meta["shard"] == {"index": 1, "start": 4, "stop": 8} and meta["run_id"] == plan.run_id
    account = account_rows(out, plan.run_id)
    assert account.complete and (account.predictions, account.errors) == (preds.height, errs.height)


def test_rewriting_a_shard_gives_the_same_bytes(tmp_path):
    t = catalog(10)
    a = prepare_run(tmp_path / "a", t, "b", 4)
    b = prepare_run(tmp_path / "b", t, "b", 4)
    write_all(a, t)
    write_all(b, t)
    write_shard(b, b.shards[1], *shard_tables(b, b.shards[1], t))
    assert folder_bytes(tmp_path / "a") == folder_bytes(tmp_path / "b")


def test_write_shard_refuses_rows_that_do_not_add_up(tmp_path):
    t = catalog(10)
    plan = prepare_run(tmp_path / "out", t, "b", 4)
    shard = plan.shards[0]
    predictions, errors = shard_tables(plan, shard, t)
    with pytest.raises(ValueError, match="covers 4 rows"):
        write_shard(plan, shard, predictions.slice(1), errors)
    duplicated = pa.concat_tables([errors, errors.slice(0, 1)])
    with pytest.raises(ValueError, match="distinct"):
        write_shard(plan, shard, predictions.slice(1), duplicated)
    foreign = predictions.set_column(predictions.schema.get_field_index("run_id"),
                                     pa.field("run_id", pa.string(), nullable=False),
                                     pa.array(["r-other"] * predictions.num_rows))
    with pytest.raises(ValueError, match="run_id"):
        write_shard(plan, shard, foreign, errors)
    with pytest.raises(ValueError):
        write_shard(plan, shard, errors, predictions)
    assert finished_shards(plan.out, plan.run_id) == set()


def test_polars_reads_dot_files_so_temporaries_live_outside_the_tables(tmp_path):
    """Why staging is a separate folder: polars' ``**/*.parquet`` glob matches dot-files."""
    folder = tmp_path / "t"
    folder.mkdir()
    pl.DataFrame({"a": [1]}).write_parquet(folder / "x.parquet")
    pl.DataFrame({"a": [2]}).write_parquet(folder / ".hidden.parquet")
    assert sorted(pl.scan_parquet(f"{tmp_path}/**/*.parquet").collect()["a"].to_list()) == [1, 2]


def test_leftovers_of_a_crash_are_invisible_and_discarded(tmp_path):
    out, t = tmp_path / "out", catalog(10)
    plan = prepare_run(out, t, "b", 4)
    write_all(plan, t, skip={1, 2})
    # what kills leave: a complete temporary file (killed before its rename) and an errors file
    # whose predictions file never arrived (killed between the two renames)
    predictions, errors = shard_tables(plan, plan.shards[1], t)
    pq.write_table(predictions, out / ".staging" / f"predictions-{plan.run_id}-shard-00001.parquet.tmp-1-ab")
    files = shard_files(out, plan.run_id, plan.shards[2])
    pq.write_table(shard_tables(plan, plan.shards[2], t)[1], files.errors)

    assert finished_shards(out, plan.run_id) == {0}
    for table in ("predictions", "errors"):  # both glob and folder scans keep working
        pl.scan_parquet(f"{out}/{table}/**/*.parquet").collect()
        pl.scan_parquet(f"{out}/{table}/").collect()
    assert pl.scan_parquet(f"{out}/predictions/**/*.parquet").collect().height == 3
    assert not account_rows(out, plan.run_id).complete
    assert account_rows(out, plan.run_id).missing_shards == (1, 2)

    removed = discard_incomplete(out, plan.run_id)
    assert {p.name for p in removed} == {f"predictions-{plan.run_id}-shard-00001.parquet.tmp-1-ab",
                                         "shard-00002.parquet"}
    write_all(plan, t, skip=finished_shards(out, plan.run_id))
    assert account_rows(out, plan.run_id).complete


def test_account_rows_notices_miscounted_and_unexpected_files(tmp_path):
    out, t = tmp_path / "out", catalog(10)
    plan = prepare_run(out, t, "b", 4)
    write_all(plan, t)
    files = shard_files(out, plan.run_id, plan.shards[0])
    pq.write_table(pq.read_table(files.predictions).slice(1), files.predictions)
    (files.predictions.parent / "shard-00007.parquet").write_bytes(files.errors.read_bytes())
    (files.errors.parent / "shard-00007.parquet").write_bytes(files.errors.read_bytes())
    account = account_rows(out, plan.run_id)
    assert not account.complete
    assert account.miscounted_shards == (0,)
    assert [p.name for p in account.unexpected_files] == ["shard-00007.parquet"] * 2


# --------------------------------------------------------------------------- kill -9

_WRITER = """
import os, sys, time
from catalogs import shards
from tests.catalogs import shard_rows as t
out, n, size, crash_at = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
table = t.catalog(n)
plan = shards.prepare_run(out, table, "b", size)
shards.discard_incomplete(out, plan.run_id)
real, calls = os.replace, [0]
def replace(src, dst):
    calls[0] += 1
    if calls[0] == crash_at:
        os._exit(9)  # dies like kill -9: no cleanup, no flush
    real(src, dst)
os.replace = replace
print("ready", flush=True)
t.write_all(plan, table, skip=shards.finished_shards(out, plan.run_id))
"""


def _writer(out: Path, n: int, size: int, crash_at: int = 0) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _WRITER, str(out), str(n), str(size), str(crash_at)],
                            cwd=REPO, stdout=subprocess.PIPE, text=True)


def _check_visible_state(out: Path, plan, table):
    """Only whole shards are visible, and each holds exactly its rows."""
    done = finished_shards(out, plan.run_id)
    visible = list((out / "predictions" / f"run={plan.run_id}").iterdir())
    assert {int(p.name[6:11]) for p in visible} == done
    if not done:  # polars refuses a glob that matches nothing
        return
    preds = pl.scan_parquet(f"{out}/predictions/**/*.parquet").collect()
    want = [r for s in plan.shards if s.index in done for r in range(s.start, s.stop) if r % 3 != 2]
    ids = table.column("object_id").to_pylist()
    assert sorted(preds["object_id"].to_list()) == sorted(ids[r] for r in want)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "out"
    table = catalog(12)
    write_all(prepare_run(out, table, "b", 2), table)
    return folder_bytes(out)


@pytest.mark.parametrize("crash_at", range(1, 7))
def test_a_kill_at_every_rename_resumes_to_identical_output(tmp_path, reference, crash_at):
    out, table = tmp_path / "out", catalog(12)
    proc = _writer(out, 12, 2, crash_at)
    proc.wait(timeout=60)
    assert proc.returncode == 9
    plan = prepare_run(out, table, "b", 2)
    assert len(finished_shards(out, plan.run_id)) == (crash_at - 1) // 2
    _check_visible_state(out, plan, table)
    resumed = _writer(out, 12, 2)
    assert resumed.wait(timeout=60) == 0
    assert folder_bytes(out) == reference


@pytest.mark.slow
def test_kill_9_at_random_moments_resumes_to_identical_output(tmp_path, reference):
    rng = random.Random(7)  # kills land anywhere from before the first shard to after the last
    for trial in range(4):
        out, table = tmp_path / f"out{trial}", catalog(12)
        for _ in range(3):  # up to three kills, then let it finish
            proc = _writer(out, 12, 2)
            assert proc.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0.0, 0.12))  # writing all 6 shards takes ~0.13 s
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
            plan = prepare_run(out, table, "b", 2)
            _check_visible_state(out, plan, table)
        assert _writer(out, 12, 2).wait(timeout=60) == 0
        assert folder_bytes(out) == reference, f"trial {trial}"
    assert not os.listdir(out / ".staging")
