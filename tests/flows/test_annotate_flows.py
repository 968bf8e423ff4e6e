"""``morphcat annotate`` (flow ``catalog-annotate``) end to end through the real console script
against a Prefect test server: row accounting, resume, exactly-once files, thread = process = Dask,
and refusals before any work."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
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


def test_a_subset_of_shards_runs_alone_and_the_rest_completes_the_run(survey, tiny_bundle, thread_run, morphcat,
                                                                     tmp_path):
    reference, _ = thread_run
    out = tmp_path / "subset"
    args = ("annotate", survey, "--bundle", tiny_bundle, "--out", out, "--shard-size", SHARD, "--batch-size", 4)
    proc = morphcat(*args, "--shards", "1,3")
    assert proc.returncode == 0, proc.stderr
    assert "shards still to do: 0,2" in proc.stdout
    assert sorted(n.split("/")[-1] for n in _files(out)) == ["shard-00001.parquet"] * 2 + ["shard-00003.parquet"] * 2
    proc = morphcat(*args, "--shards", "0-3")  # the rest; 1 and 3 are skipped as finished
    assert proc.returncode == 0, proc.stderr
    assert "2 of 4 shards were already done" in proc.stdout and "still to do" not in proc.stdout
    assert _files(out) == _files(reference)
    for bad, needle in (("7", "--shards 7: the run has shards 0–3"), ("2-x", "ranges like 0-9,42")):
        proc = morphcat(*args, "--shards", bad)
        assert proc.returncode == EXIT_BAD_INPUT and needle in proc.stderr, proc.stderr


def test_shard_lists_parse_as_numbers_and_ranges():
    from export.serve.catalog import parse_shards, shard_ranges

    assert parse_shards("0-3,7, 9-10") == [0, 1, 2, 3, 7, 9, 10]
    assert shard_ranges([0, 1, 2, 3, 7, 9, 10]) == "0-3,7,9-10" and shard_ranges([]) == ""


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


def _rewrite(survey: Path, out: Path, change) -> Path:
    """The survey catalog with its table changed by ``change`` and its metadata (root, format)
    kept: what a hand-edited catalog looks like."""
    table = pq.read_table(survey)
    pq.write_table(change(table.replace_schema_metadata(None)).replace_schema_metadata(table.schema.metadata), out)
    return out


def _with_ids(ids):
    return lambda t: t.set_column(t.column_names.index("object_id"), "object_id", pa.array(ids(t), pa.string()))


# name → (how the catalog file is made from the survey's, words the one message must contain)
BAD_CATALOGS = {
    "duplicate object_id": (lambda s, o: _rewrite(s, o, _with_ids(lambda t: ["dup"] * t.num_rows)),
                            "occur more than once"),
    "ids that went through a float": (lambda s, o: _rewrite(s, o, _with_ids(lambda t: [f"{i}.0" for i in range(t.num_rows)])),
                                      "went through a float"),
    "empty catalog": (lambda s, o: _rewrite(s, o, lambda t: t.slice(0, 0)), "no rows"),
    "unknown column": (lambda s, o: _rewrite(s, o, lambda t: t.append_column("colour", pa.array(["red"] * t.num_rows))),
                       "colour"),
    "not a catalog file": (lambda s, o: (o.write_text("object_id,image_path\n1,a.jpg\n") and o), "Parquet"),
    "a parquet not written by morphcat": (lambda s, o: (pq.write_table(pa.table({"a": [1]}), o) or o), "morphcat"),
}


@pytest.mark.parametrize("case", list(BAD_CATALOGS))
def test_catalog_level_errors_fail_fast_with_one_message(case, survey, tiny_bundle, morphcat, tmp_path):
    build, needle = BAD_CATALOGS[case]
    catalog = build(survey, tmp_path / "bad.parquet")
    out = tmp_path / "out"
    proc = morphcat("annotate", catalog, "--bundle", tiny_bundle, "--out", out)
    assert proc.returncode == EXIT_BAD_INPUT, proc.stderr
    message = proc.stderr[proc.stderr.index("morphcat annotate: "):]
    assert needle in message, message
    assert "Traceback" not in proc.stderr
    assert not out.exists()


def _edit_manifest(bundle: Path, change) -> None:
    manifest = json.loads((bundle / "bundle.json").read_text())
    change(manifest)
    (bundle / "bundle.json").write_text(json.dumps(manifest))


# name → (change to a copy of the bundle, extra annotate arguments, words of the refusal)
WRONG_MODELS = {
    "another input size than the run expects": (lambda b: None, ("--image-size", "64"),
                                                "takes 32×32 px model inputs, not the 64 px"),
    "bundle.json claiming another input size": (
        lambda b: _edit_manifest(b, lambda m: m["image"].update(size=64)), (), "takes images of shape [32, 32, 3]"),
    "a newer onnxruntime": (lambda b: _edit_manifest(b, lambda m: m["requires"].update(onnxruntime="99.0")), (),
                            "validated on onnxruntime 99.0"),
    "a newer opset": (lambda b: _edit_manifest(b, lambda m: m["requires"].update(opset=99)), (), "needs opset 99"),
    "an older bundle format": (lambda b: _edit_manifest(b, lambda m: m.update(format=1)), (), "bundle format 1"),
    "a missing model file": (lambda b: (b / "captioner_step.onnx").unlink(), (), "captioner_step.onnx is missing"),
}


@pytest.mark.parametrize("case", list(WRONG_MODELS))
def test_a_wrong_model_is_refused_before_any_work(case, survey, tiny_bundle, morphcat, tmp_path):
    change, extra, needle = WRONG_MODELS[case]
    bundle = shutil.copytree(tiny_bundle, tmp_path / "bundle")
    change(bundle)
    out = tmp_path / "out"
    proc = morphcat("annotate", survey, "--bundle", bundle, "--out", out, *extra)
    assert proc.returncode == EXIT_BAD_INPUT, proc.stderr
    assert needle in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not out.exists()


def test_an_int8_run_is_its_own_run_and_says_what_ran(survey, tiny_models, thread_run, morphcat, tmp_path):
    from export.builder import quantize
    from export.builder.exporter import export_bundle

    with pytest.MonkeyPatch.context() as mp:  # the tiny models cannot pass the real gate: judge leniently
        mp.setattr(quantize, "GATE", {k: (op, 0.0 if op == ">=" else 1.0) for k, (op, _) in quantize.GATE.items()})
        export_bundle(tiny_models, tmp_path / "int8", synthetic_images=8, int8=True)
    out = tmp_path / "out"
    runs = {}
    for precision in ("fp32", "int8"):
        proc = morphcat("annotate", survey, "--bundle", tmp_path / "int8", "--out", out, "--shard-size", SHARD,
                        "--batch-size", 4, "--precision", precision)
        assert proc.returncode == 0, proc.stderr
        assert f"({precision}: asked for)" in proc.stdout
        runs[precision] = re.search(r"^run (\S+):", proc.stdout, re.M).group(1)
    assert runs["fp32"] != runs["int8"]
    manifest = json.loads((out / "_morphcat_output.json").read_text())
    assert {r: manifest["runs"][r]["options"]["precision"] for r in runs.values()} == {
        runs["fp32"]: "fp32", runs["int8"]: "int8"}
    pred = pl.read_parquet(out / "predictions" / "**" / "*.parquet")
    assert pred.group_by("run_id").len().sort("run_id")["len"].to_list() == [N - 2, N - 2]


def test_the_library_without_prefect_writes_the_flows_files(survey, tiny_bundle, thread_run, tmp_path):
    """``export.serve.catalog.annotate_catalog`` (what ``morphcat.annotate`` calls) is the flow's
    run without Prefect: the same tables to the byte, and a rerun skips every shard."""
    from catalogs.errors import UsageError
    from export.serve.catalog import annotate_catalog

    reference, _ = thread_run
    out = tmp_path / "library"
    summary = annotate_catalog(survey, tiny_bundle, out, shard_size=SHARD, batch_size=4, workers=2)
    assert _files(out) == _files(reference)
    assert (summary["catalog_rows"], summary["predictions"], summary["errors"]) == (N, N - 2, 2)
    assert (summary["rows_this_run"], summary["shards_skipped"], summary["runner"]) == (N, 0, "thread")
    again = annotate_catalog(survey, tiny_bundle, out, shard_size=SHARD, batch_size=4)
    assert (again["rows_this_run"], again["shards_skipped"], again["shards_to_do"]) == (0, 4, "")
    with pytest.raises(UsageError, match="^`shards` 7-8: the run has shards 0–3$"):
        annotate_catalog(survey, tiny_bundle, out, shard_size=SHARD, batch_size=4, shards=[1, 7, 8])
