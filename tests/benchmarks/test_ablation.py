"""``morphcat bench ablation``'s declared variants and its table (the runs themselves are hours of
training: a benchmark, never a test)."""

from __future__ import annotations

import pytest

from dataclasses import replace

from benchmarks.ablation import (
    REFERENCE,
    VARIANTS,
    Ledger,
    ablation_markdown,
    ledger_table,
    protocol_of,
    run_ablation,
    variant_config,
)
from models.config import ModelConfig, TrainSettings


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_variant_is_a_valid_configuration_that_differs_from_the_default(name):
    base, settings = ModelConfig(), TrainSettings()
    config, vsettings = variant_config(VARIANTS[name], base, settings)
    ModelConfig.from_dict(config.to_dict())  # valid and serialisable, as the sidecars store it
    changed = (config, vsettings, VARIANTS[name].views, VARIANTS[name].votes) != (base, settings, 1, True)
    assert changed == (name != REFERENCE), name


def _line(variant, fold, protocol, accuracy):
    scores = {"rows": 10, "accuracy": accuracy, "balanced_accuracy": accuracy - 0.1,
              "strata": {"all": {"n": 10, "accuracy": accuracy, "balanced_accuracy": accuracy - 0.1,
                                 "recall": {"merger": {"recall": 0.5, "n": 2, "low": 0.1, "high": 0.9}}}}}
    return {"variant": variant, "fold": fold, "what": VARIANTS[variant].what, "protocol": protocol,
            "commit": "abc", "minutes": 2.0, "scores": {"gz2": scores}}


PROTOCOL = {"folds": 2, "epochs": 1, "seed": 0, "models": ["classifier"], "catalogs": {"gz2": "f00"}}


def test_the_table_comes_from_the_ledger_lines_of_one_protocol():
    other = dict(PROTOCOL, epochs=9)
    lines = [_line("default", 0, PROTOCOL, 0.8), _line("default", 1, PROTOCOL, 0.6),
             _line("union", 0, PROTOCOL, 0.7), _line("union", 1, other, 0.1)]
    rows = ledger_table(lines, PROTOCOL)
    assert [(r["variant"], r["folds"], r["complete"]) for r in rows] == [("default", [0, 1], True),
                                                                          ("union", [0], False)]
    assert rows[0]["report"]["gz2"]["strata"]["all"]["accuracy"]["mean"] == pytest.approx(0.7)
    assert rows[0]["report"]["gz2"]["strata"]["all"]["n"] == 20
    md = ablation_markdown(rows, PROTOCOL)
    assert "### gz2" in md and "| default | 2/2 | 0.700 ± 0.141 (n=20) |" in md and "| union | 1/2 | 0.700 (n=10) |" in md  # one fold: no spread shown
    assert ledger_table(lines, PROTOCOL) == rows  # the same lines, the same table


def test_a_run_skips_the_cells_in_its_ledger_and_renders_the_same_table(tmp_path):
    pytest.importorskip("tensorflow")
    from catalogs.contract import Catalog, write_catalog
    from catalogs.synthetic import render_survey

    table = render_survey(tmp_path / "s", n=40, seed=3, size=64, mix="balanced", workers=1)
    catalog = write_catalog(Catalog(table, tmp_path / "s", "synthetic"), tmp_path / "s.parquet")
    protocol = protocol_of([catalog], 2, replace(TrainSettings(), epochs=1), ("classifier",))
    book = Ledger(tmp_path / "ledger.jsonl")
    book.append(_line("default", 0, protocol, 0.5))  # fold 0 is finished: only fold 1 may train
    run = dict(catalogs=[catalog], out=tmp_path / "out", variants=["default"], ledger=book.path, k=2, epochs=1,
               kinds=("classifier",), throughput_images=0)
    started = []
    first = run_ablation(**run, progress=started.append)
    assert started == ["default, fold 2 of 2"]
    lines = book.lines()
    assert [(x["variant"], x["fold"]) for x in lines] == [("default", 0), ("default", 1)]
    assert lines[1]["protocol"] == protocol and "s" in lines[1]["scores"] and lines[1]["cpu_flags"] is not None
    md = (tmp_path / "out" / "ablation.md").read_text()
    started.clear()
    second = run_ablation(**run, progress=started.append)  # every cell done: nothing trains
    assert started == [] and book.lines() == lines
    assert (tmp_path / "out" / "ablation.md").read_text() == md and second["results"] == first["results"]
