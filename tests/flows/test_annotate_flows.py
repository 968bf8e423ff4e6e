"""``morphcat annotate`` (flow ``catalog-annotate``) end to end through the real console script
against a Prefect test server: row accounting, resume, exactly-once files, thread = process = Dask,
and refusals before any work."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest

from flows.cli import EXIT_BAD_INPUT

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")]

N = 30
SHARD = 8  # 4 shards: 8 + 8 + 8 + 6


def _files(out: Path) -> dict[str, bytes]:
    """Every table file under OUT by relative path (the staging folder must be empty)."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*.parquet"))
            if ".staging" not in p.parts}


@pytest.fixture(scope="module")
def survey(tmp_path_factory, morphcat):
    """A 64 px synthetic survey of N galaxies; one image replaced by text, one deleted."""
    root = tmp_path_factory.mktemp("annotate") / "survey"
    proc = morphcat("synth", root, "--n", N, "--seed", 9, "--size", 64, "--workers", 1)
    assert proc.returncode == 0, proc.stderr
    images = sorted((root / "images").glob("*.jpg"))
    images[3].write_text("not a picture")
    images[17].unlink()
    return root / "catalog.parquet"


@pytest.fixture(scope="module")
def thread_run(survey, tiny_bundle, tmp_path_factory, morphcat):
    out = tmp_path_factory.mktemp("runs") / "thread"
    proc = morphcat("annotate", survey, "--bundle", tiny_bundle, "--out", out, "--shard-size", SHARD,
                    "--batch-size", 4)
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_every_catalog_row_is_a_prediction_or_an_error(survey, thread_run):
    out, proc = thread_run
    assert f"{N} rows → {N - 2} predictions + 2 errors" in proc.stdout
    pred = pl.read_parquet(out / "predictions" / "**" / "*.parquet")
    err = pl.read_parquet(out / "errors" / "**" / "*.parquet")
    ids = pl.read_parquet(survey)["object_id"]
    assert pred.height + err.height == N
    assert sorted(pred["object_id"].to_list() + err["object_id"].to_list()) == sorted(ids.to_list())
    assert sorted(err["error_type"].to_list()) == ["missing", "not_an_image"]
    assert pred["run_id"].n_unique() == 1 and pred["caption"].null_count() == 0
    run = pred["run_id"][0]
    assert sorted(_files(out)) == [f"{t}/run={run}/shard-{i:05d}.parquet" for t in ("errors", "predictions")
                                   for i in range(4)]
    # Joins back to the input catalog on object_id, as the README shows.
    joined = pl.scan_parquet(out / "predictions" / "**" / "*.parquet").join(
        pl.scan_parquet(survey).select("object_id", "label"), on="object_id").collect()
    assert joined.height == N - 2


def test_rerun_skips_finished_shards_and_changes_no_byte(survey, tiny_bundle, thread_run, morphcat):
    out, _ = thread_run
    before = _files(out)
    proc = morphcat("annotate", survey, "--bundle", tiny_bundle, "--out", out, "--shard-size", SHARD,
                    "--batch-size", "4")
    assert proc.returncode == 0, proc.stderr
    assert "4 of 4 shards were already done" in proc.stdout
    assert _files(out) == before


def test_resume_after_a_crash_gives_identical_output(survey, tiny_bundle, thread_run, morphcat, tmp_path):
    """What a kill leaves (a shard's errors file without its predictions file, a staged
    temporary, a missing shard) is cleaned up and redone to the same bytes."""
    out, _ = thread_run
    crashed = tmp_path / "crashed"
    shutil.copytree(out, crashed)
    run_folders = {t: next((crashed / t).iterdir()) for t in ("predictions", "errors")}
    (run_folders["predictions"] / "shard-00001.parquet").unlink()  # killed between its two renames
    (run_folders["predictions"] / "shard-00003.parquet").unlink()
    (run_folders["errors"] / "shard-00003.parquet").unlink()  # never started
    (crashed / ".staging" / f"predictions-{run_folders['predictions'].name[4:]}-shard-00003.parquet.tmp-1-ab").write_bytes(b"half")
    proc = morphcat("annotate", survey, "--bundle", tiny_bundle, "--out", crashed, "--shard-size", SHARD,
                    "--batch-size", "4")
    assert proc.returncode == 0, proc.stderr
    assert "2 of 4 shards were already done" in proc.stdout
    assert _files(crashed) == _files(out)
    assert not any((crashed / ".staging").iterdir())


@pytest.mark.parametrize("runner", ["process", "dask"])
def test_process_and_dask_runners_write_what_the_thread_runner_writes(runner, survey, tiny_bundle, thread_run,
                                                                      morphcat, tmp_path):
    out, _ = thread_run
    other = tmp_path / runner
    proc = morphcat("annotate", survey, "--bundle", tiny_bundle, "--out", other, "--shard-size", SHARD,
                    "--batch-size", "4", "--runner", runner, "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    assert _files(other) == _files(out)


def test_another_catalog_in_the_same_folder_is_refused_before_any_work(survey, tiny_bundle, thread_run, morphcat,
                                                                        tmp_path):
    out, _ = thread_run
    before = _files(out)
    smaller = tmp_path / "smaller.parquet"
    pl.read_parquet(survey).head(5).write_parquet(smaller)  # loses the root metadata: re-ingest instead
    proc = morphcat("ingest", survey.parent / "images", "--format", "folder", "--out", smaller)
    assert proc.returncode == 0, proc.stderr
    proc = morphcat("annotate", smaller, "--bundle", tiny_bundle, "--out", out)
    assert proc.returncode == EXIT_BAD_INPUT, proc.stderr
    assert "holds the annotations of another catalog" in proc.stderr and "Traceback" not in proc.stderr
    assert _files(out) == before


def test_a_tampered_bundle_is_refused_before_any_work(survey, tiny_bundle, morphcat, tmp_path):
    bundle = shutil.copytree(tiny_bundle, tmp_path / "bundle")
    onnx = bundle / "regressor.onnx"
    data = bytearray(onnx.read_bytes())
    data[-1] ^= 0xFF
    onnx.write_bytes(bytes(data))
    out = tmp_path / "out"
    proc = morphcat("annotate", survey, "--bundle", bundle, "--out", out)
    assert proc.returncode == EXIT_BAD_INPUT, proc.stderr
    assert "regressor.onnx" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()
