"""The morphcat command end to end on tiny inputs: the real console script in its own process,
its flows running against a real (temporary) Prefect API."""

import polars as pl
import pyarrow.parquet as pq
import pytest
from PIL import Image

from catalogs.contract import read_catalog
from catalogs.tree import GZ2_TREE
from flows.cli import EXIT_BAD_INPUT


def test_synth_then_ingest_the_images_as_a_folder(tmp_path, morphcat):
    survey = tmp_path / "survey"
    proc = morphcat("synth", survey, "--n", "6", "--seed", "3", "--size", "64", "--mix", "balanced")
    assert proc.returncode == 0, proc.stderr
    catalog = read_catalog(survey / "catalog.parquet")
    assert len(catalog) == 6
    assert catalog.root == survey.resolve()
    assert set(GZ2_TREE.debiased_columns) <= set(catalog.table.column_names)
    df = pl.from_arrow(catalog.table)
    assert df["label"].null_count() == 0 and df["caption"].null_count() == 0
    assert all(Image.open(catalog.image_file(i)).size == (64, 64) for i in range(6))
    assert "6 rows (synthetic)" in proc.stdout

    out = tmp_path / "folder.parquet"
    assert morphcat("ingest", survey / "images", "--format", "folder", "--out", out).returncode == 0
    folder = read_catalog(out)
    assert sorted(folder.table.column("object_id").to_pylist()) == sorted(df["object_id"].to_list())
    assert "label" not in folder.table.column_names  # no votes, so no derived targets


def test_ingest_manifest_with_missing_image_keeps_the_row_and_says_so(tmp_path, morphcat):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.jpg")
    (tmp_path / "m.csv").write_text("id,path\n587739505552785605,a.jpg\n2,gone.jpg\n")
    out = tmp_path / "m.parquet"
    proc = morphcat("ingest", tmp_path / "m.csv", "--format", "folder", "--out", out,
                    "--id-column", "id", "--path-column", "path")
    assert proc.returncode == 0, proc.stderr
    ids = pq.read_table(out).column("object_id").to_pylist()
    assert ids == ["587739505552785605", "2"]
    assert "1 rows point at missing image files" in proc.stdout


@pytest.mark.parametrize(
    "manifest, needle",
    [
        ("id,path\n1,a.jpg\n1,b.jpg\n", "occur more than once"),
        ("id,path\n5.87739505552786e+17,a.jpg\n", "went through a float"),
        ("id,path\n", "no rows"),
        ("ident,path\n1,a.jpg\n", "'id'"),
    ],
)
def test_bad_input_is_one_clear_message_and_exit_2(tmp_path, morphcat, manifest, needle):
    (tmp_path / "m.csv").write_text(manifest)
    out = tmp_path / "m.parquet"
    proc = morphcat("ingest", tmp_path / "m.csv", "--format", "folder", "--out", out,
                    "--id-column", "id", "--path-column", "path")
    assert proc.returncode == EXIT_BAD_INPUT, proc.stderr
    last = proc.stderr[proc.stderr.index("morphcat ingest: "):]
    assert needle in last
    assert "Traceback" not in proc.stderr
    assert not out.exists()


@pytest.mark.slow
def test_demo_runs_the_pipeline_and_prints_the_query(tmp_path, morphcat):
    proc = morphcat("demo", "--out", tmp_path, "--n", "30", "--size", "64", "--epochs", "1")
    assert proc.returncode == 0, proc.stderr
    printed = proc.stdout
    assert 'pl.scan_parquet("' in printed and "truth_agreement" in printed
    assert "Held-out test split" in printed and "BLEU-4" in printed
    assert (tmp_path / "survey" / "catalog.parquet").is_file()
    assert (tmp_path / "models" / "classifier.keras").is_file()
    assert (tmp_path / "report" / "metrics.json").is_file()
    assert (tmp_path / "bundle" / "bundle.json").is_file()
    assert "label_agreement" in printed and "ood_flagged" in printed
    assert "30 predictions + 0 errors of 30 rows" in printed
    pred = pl.read_parquet(tmp_path / "annotations" / "predictions" / "**" / "*.parquet")
    assert sorted(pred["object_id"]) == sorted(pl.read_parquet(tmp_path / "survey" / "catalog.parquet")["object_id"])


def test_ingest_of_the_real_sample_reproduces_every_derived_label(tmp_path, shared_data, morphcat):
    out = tmp_path / "gz2.parquet"
    src = shared_data / "gz2-sample" / "gz2_sample_labels.csv"
    assert morphcat("ingest", src, "--format", "gz2", "--out", out).returncode == 0
    ours = pl.read_parquet(out).select("object_id", "label", "caption")
    theirs = pl.read_csv(src, infer_schema=False).select(pl.col("dr7objid").alias("object_id"), "derived_label")
    joined = ours.join(theirs, on="object_id", how="full", coalesce=True)
    assert joined.height == 700
    assert (joined["label"] == joined["derived_label"]).sum() == 700
    assert joined["caption"].null_count() == 0


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # Keras on NumPy 2
def test_export_writes_a_parity_checked_bundle(tmp_path, morphcat):
    import json

    from tests.export.tiny_models import write_tiny_models

    models = write_tiny_models(tmp_path / "models", kinds=("classifier", "regressor"))
    out = tmp_path / "bundle"
    proc = morphcat("export", models, "--out", out)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "bundle.json").read_text())
    assert sorted(manifest["models"]) == ["classifier", "regressor"] and manifest["parity"]["passed"]
    assert sorted(p.name for p in out.iterdir()) == ["bundle.json", "classifier.onnx", "image_models.onnx",
                                                     "regressor.onnx"]
    assert manifest["merged"]["computes"] == ["classifier", "regressor"]
    assert f"Model bundle {manifest['bundle_id']}" in proc.stdout and "| classifier | cam |" in proc.stdout
    assert "image_models.onnx computes classifier, regressor in one graph" in proc.stdout


def test_export_of_a_folder_without_models_is_one_message_and_exit_2(tmp_path, morphcat):
    (tmp_path / "models").mkdir()
    proc = morphcat("export", tmp_path / "models", "--out", tmp_path / "bundle")
    assert proc.returncode == EXIT_BAD_INPUT, proc.stderr
    assert "morphcat export: no trained model in" in proc.stderr
    assert f"(morphcat train … --out {tmp_path / 'models'})" in proc.stderr  # the library's train_models(out=…)
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "bundle").exists()


@pytest.mark.parametrize(("args", "needle"), [
    (["--cron", "every night"], 'Invalid cron string: "every night"'),
    (["--cron", "0 3 * * *", "--catalog", "c.parquet"], "--cron needs --bundle, --out"),
    (["--catalog", "c.parquet", "--bundle", "b", "--out", "o"], "give --cron too"),
])
def test_serve_refuses_an_incomplete_schedule_before_contacting_prefect(args, needle, morphcat):
    proc = morphcat("serve", *args, timeout=120)
    assert proc.returncode == EXIT_BAD_INPUT, proc.stderr
    assert needle in proc.stderr and "Traceback" not in proc.stderr


def test_bench_active_head_only_without_a_backbone_is_one_message_and_exit_2(tmp_path, morphcat):
    proc = morphcat("bench", "active", tmp_path / "c.parquet", "--out", tmp_path / "o", "--head-only", timeout=120)
    assert proc.returncode == EXIT_BAD_INPUT, proc.stderr
    assert "--head-only needs --init-from" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("command, message, shown", [
    ("annotate", "`shards` 7: the run has shards 0–3", "--shards 7: the run has shards 0–3"),
    ("annotate", "`image_size` and `unknown`", "--image-size and `unknown`"),  # not a parameter: as it was
    ("select", "`strategy` bald needs `bundle`", "--strategy bald needs --bundle"),
    # another step's parameter: the command that runs that step, with its flag and value
    ("export", "(`train_models(out=/m)`)", "(morphcat train … --out /m)"),
    ("export", "train the classifier first (`train_models(models=classifier)`)",
     "train the classifier first (morphcat train … --models classifier)"),
    ("annotate", "(export it with `export_bundle(int8=True)`)", "(export it with morphcat export … --int8)"),
    ("unusual", "(write one with `annotate_catalog(out=…)`)", "(write one with morphcat annotate … --out)"),
    ("annotate", "`unknown_step(out=…)`", "`unknown_step(out=…)`"),
])
def test_library_wording_becomes_the_flags_a_user_types(command, message, shown):
    from flows.cli import _parsers, in_flags

    assert in_flags(message, *_parsers(command)) == shown


@pytest.mark.parametrize("console_level, shown", [(None, False), ("INFO", True)])
def test_a_temporary_server_leaves_prefect_info_lines_off_the_console(tmp_path, console_level, shown):
    """Without a configured API the flow-run lines would link to a server that is gone when the
    command ends; the user's own console level still wins."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL")}
    if console_level:
        env["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] = console_level
    exe = str(Path(sys.executable).with_name("morphcat"))
    proc = subprocess.run([exe, "synth", tmp_path / "s", "--n", "2", "--size", "32", "--workers", "1"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "2 rows (synthetic)" in proc.stdout
    assert ("| INFO" in proc.stdout + proc.stderr) is shown


@pytest.mark.parametrize(("args", "needle"), [
    (["train", "c.parquet", "--out", "m", "--models", "captioner", "--unlabelled", "u.parquet"],
     "--unlabelled catalogs teach the classifier and the regressor"),
    (["evaluate", "m", "c.parquet", "--out", "r", "--unlabelled", "u.parquet"], "it goes with --cv"),
])
def test_unlabelled_catalogs_without_a_model_to_teach_are_one_message_and_exit_2(tmp_path, args, needle, morphcat):
    proc = morphcat(*args, timeout=300)
    assert proc.returncode == EXIT_BAD_INPUT, proc.stderr
    assert needle in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(("args", "needle"), [
    (["evaluate", "m", "c.parquet", "--out", "r", "--members", "2"], "--members trains an ensemble in each fold: it goes with --cv"),
    (["evaluate", "--cv", "2", "c.parquet", "--out", "r", "--members", "0"], "--members needs at least 1 model, got 0"),
])
def test_an_ensemble_outside_cross_validation_or_of_no_model_is_one_message_and_exit_2(tmp_path, args, needle, morphcat):
    proc = morphcat(*args, timeout=300)
    assert proc.returncode == EXIT_BAD_INPUT, proc.stderr
    assert needle in proc.stderr and "Traceback" not in proc.stderr
