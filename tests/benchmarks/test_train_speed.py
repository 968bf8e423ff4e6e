"""``morphcat bench train-speed``: its entries, and one real run on a tiny catalog (the figures it
measures are a benchmark's, never asserted)."""

from __future__ import annotations

import pytest

from benchmarks.train_speed import BEFORE, entry_recipe, parse_entry, render


@pytest.mark.parametrize("entry, parsed", [("default", ("default", None)), ("lean-stem", ("lean-stem", None)),
                                           ("plain-hard-union@float32", ("plain-hard-union", "float32")),
                                           ("default@bfloat16", ("default", "bfloat16"))])
def test_an_entry_is_a_variant_and_maybe_a_precision(entry, parsed):
    assert parse_entry(entry) == parsed


@pytest.mark.parametrize("entry, needle", [("no-such", "unknown variant 'no-such'"),
                                           ("default@float16", "unknown precision 'float16'")])
def test_a_bad_entry_is_one_clear_error(entry, needle):
    with pytest.raises(ValueError, match=needle):
        parse_entry(entry)


def test_the_before_entry_is_the_earlier_default_in_float32():
    config, settings = entry_recipe(BEFORE, epochs=3)
    assert (config.backbone.name, settings.class_heads, settings.soft_targets) == ("small_cnn", "union", 0.0)
    assert (settings.precision, settings.epochs) == ("float32", 3)
    assert entry_recipe("default", epochs=3)[1].precision == "auto"


def test_the_table_gives_each_entry_its_median_and_ratio():
    def run(wall, cpu, precision):
        return {"images_per_second": wall, "images_per_cpu_second": cpu, "precision": precision, "seconds": 1.0}
    runs = {"plain-hard-union@float32": [run(100.0, 50.0, "float32"), run(120.0, 60.0, "float32")],
            "default": [run(250.0, 100.0, "bfloat16"), run(210.0, 120.0, "bfloat16")]}
    result = {"machine": {"cpu": "cpu", "cores": 2, "cpu_flags": ["avx2"]}, "commit": "abc", "epochs": 3,
              "repeats": 2, "runs": runs}
    md = render(result)
    assert "| plain-hard-union@float32 | " in md and "| 100.0, 120.0: 110.0, ×1.00 | 50.0, 60.0: 55.0, ×1.00 |" in md
    assert "| bfloat16 | 250.0, 210.0: 230.0, ×2.09 | 100.0, 120.0: 110.0, ×2.00 |" in md and "flags avx2" in md
    assert "after the first epoch" not in md  # not measured in these runs: no column


def test_steady_rates_leave_out_the_first_epoch():
    from benchmarks.train_speed import steady_rates

    marks = [(0.0, 0.0), (10.0, 30.0), (12.0, 33.0), (14.0, 36.0)]  # the first epoch traces: 10 s
    assert steady_rates(marks, 100) == {"steady_images_per_second": 50.0, "steady_images_per_cpu_second": 33.3}
    assert steady_rates(marks[:2], 100) == {"steady_images_per_second": None, "steady_images_per_cpu_second": None}


def test_a_run_trains_every_entry_and_records_its_precision(tmp_path):
    pytest.importorskip("tensorflow")
    import json

    from benchmarks.train_speed import run_train_speed
    from catalogs.contract import Catalog, write_catalog
    from catalogs.synthetic import render_survey

    table = render_survey(tmp_path / "s", n=16, seed=3, size=64, mix="balanced", workers=1)
    catalog = write_catalog(Catalog(table, tmp_path / "s", "synthetic"), tmp_path / "s.parquet")
    said = []
    paths = run_train_speed([catalog], tmp_path / "out", ["lean-stem@float32", "default"], epochs=2, repeats=1,
                            progress=said.append)
    assert [s.split(":")[0] for s in said] == ["repeat 1/1 lean-stem@float32", "repeat 1/1 default"]
    result = json.loads(paths["json"].read_text())
    assert result["runs"]["lean-stem@float32"][0]["precision"] == "float32"
    assert all(r[0][k] > 0 for r in result["runs"].values()
               for k in ("images_per_second", "images_per_cpu_second", "steady_images_per_second",
                         "steady_images_per_cpu_second"))
    assert "| lean-stem@float32 |" in paths["md"].read_text()
