"""``morphcat bench ablation``'s declared variants and its table (the runs themselves are hours of
training: a benchmark, never a test)."""

from __future__ import annotations

import pytest

from dataclasses import asdict, replace

from benchmarks.ablation import (
    REFERENCE,
    VARIANTS,
    Ledger,
    ablation_markdown,
    ledger_table,
    line_recipe,
    protocol_of,
    run_ablation,
    variant_config,
    variant_recipe,
)
from models.config import ModelConfig, TrainSettings


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_variant_is_a_valid_configuration_that_differs_from_the_default(name):
    base, settings = ModelConfig(), TrainSettings()
    config, vsettings = variant_config(VARIANTS[name], base, settings)
    ModelConfig.from_dict(config.to_dict())  # valid and serialisable, as the sidecars store it
    v = VARIANTS[name]
    changed = (config, vsettings, v.views, v.votes, v.unlabelled, v.members) != (base, settings, 1, True, False, 1)
    assert changed == (name != REFERENCE), name


def _line(variant, fold, protocol, accuracy, recorded_as=None, settings=None):
    """A ledger line of ``variant``'s recipe (``settings`` changed), written under the name
    ``recorded_as`` (default: the variant's)."""
    config, vsettings = variant_config(VARIANTS[variant], ModelConfig(), TrainSettings())
    vsettings = replace(vsettings, **(settings or {}))
    scores = {"rows": 10, "accuracy": accuracy, "balanced_accuracy": accuracy - 0.1,
              "strata": {"all": {"n": 10, "accuracy": accuracy, "balanced_accuracy": accuracy - 0.1,
                                 "recall": {"merger": {"recall": 0.5, "n": 2, "low": 0.1, "high": 0.9}}}}}
    return {"variant": recorded_as or variant, "fold": fold, "what": VARIANTS[variant].what, "protocol": protocol,
            "commit": "abc", "minutes": 2.0, "scores": {"gz2": scores}, "config": config.to_dict(),
            "settings": asdict(vsettings), "views": VARIANTS[variant].views,
            "train_images_per_second": {m: 1.0 for m in protocol["models"]}}


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


def test_cells_are_known_by_their_recipe_not_their_name():
    """When the default changes, the earlier cells count for whichever variant declares their
    recipe now; a recipe nobody declares keeps its name, marked retired."""
    lines = [_line("union", 0, PROTOCOL, 0.7, recorded_as="default"),  # union's recipe, once called default
             _line("default", 0, PROTOCOL, 0.8, recorded_as="soft-0.9"),
             _line("default", 1, PROTOCOL, 0.6),
             _line("default", 0, PROTOCOL, 0.5, recorded_as="gone", settings={"learning_rate": 0.123})]
    rows = ledger_table(lines, PROTOCOL)
    assert [(r["variant"], r["folds"]) for r in rows] == [("union", [0]), ("default", [0, 1]), ("gone@abc (retired)", [0])]
    assert rows[0]["what"] == VARIANTS["union"].what
    book_done = {(line_recipe(x), x["fold"]) for x in lines}
    assert (variant_recipe("default", PROTOCOL), 1) in book_done and (variant_recipe("union", PROTOCOL), 1) not in book_done


def test_fields_added_since_a_line_was_written_read_as_their_defaults():
    line = _line("default", 0, PROTOCOL, 0.8)
    del line["settings"]["vote_targets"], line["config"]["backbone"]["widths"]
    assert line_recipe(line) == variant_recipe("default", PROTOCOL)
    line["settings"]["soft_targets"] = 0.25
    assert line_recipe(line) != variant_recipe("default", PROTOCOL)


def test_a_cell_that_trained_on_unlabelled_catalogs_is_its_own_recipe():
    line = _line("default", 0, PROTOCOL, 0.8, recorded_as="pseudo-labels")
    assert line_recipe(line) == variant_recipe("default", PROTOCOL)
    line["unlabelled"] = {"kaggle-unlabelled": "f01"}
    assert line_recipe(line) == variant_recipe("pseudo-labels", PROTOCOL) != variant_recipe("default", PROTOCOL)
    assert [r["variant"] for r in ledger_table([line], PROTOCOL)] == ["pseudo-labels"]


def test_an_ensembles_cell_is_its_own_recipe_and_older_lines_count_as_one_member():
    line = _line("default", 0, PROTOCOL, 0.8, recorded_as="ensemble-2")
    assert "members" not in line and line_recipe(line) == variant_recipe("default", PROTOCOL)
    line["members"] = 2
    assert line_recipe(line) == variant_recipe("ensemble-2", PROTOCOL) != variant_recipe("default", PROTOCOL)
    line["members"] = 1
    assert line_recipe(line) == variant_recipe("default", PROTOCOL)


def test_a_variant_that_needs_unlabelled_catalogs_refuses_to_start_without_them(tmp_path):
    with pytest.raises(ValueError, match="pseudo-labels.*--unlabelled"):
        run_ablation([tmp_path / "none.parquet"], tmp_path / "out", ["default", "pseudo-labels"])


def test_a_run_skips_the_cells_in_its_ledger_and_renders_the_same_table(tmp_path):
    pytest.importorskip("tensorflow")
    from catalogs.contract import Catalog, write_catalog
    from catalogs.synthetic import render_survey

    table = render_survey(tmp_path / "s", n=40, seed=3, size=64, mix="balanced", workers=1)
    catalog = write_catalog(Catalog(table, tmp_path / "s", "synthetic"), tmp_path / "s.parquet")
    protocol = protocol_of([catalog], 2, replace(TrainSettings(), epochs=1), ("classifier",))
    book = Ledger(tmp_path / "ledger.jsonl")
    book.append(_line("default", 0, protocol, 0.5, recorded_as="renamed"))  # fold 0 is done: only fold 1 trains
    run = dict(catalogs=[catalog], out=tmp_path / "out", variants=["default"], ledger=book.path, k=2, epochs=1,
               kinds=("classifier",), throughput_images=0)
    started = []
    first = run_ablation(**run, progress=started.append)
    assert started == ["default, fold 2 of 2"]
    lines = book.lines()
    assert [(x["variant"], x["fold"]) for x in lines] == [("renamed", 0), ("default", 1)]
    assert lines[1]["protocol"] == protocol and "s" in lines[1]["scores"] and lines[1]["cpu_flags"] is not None
    assert [t["epochs_run"] for t in lines[1]["trainings"]] == [1] and "member_scores" not in lines[1]
    md = (tmp_path / "out" / "ablation.md").read_text()
    started.clear()
    second = run_ablation(**run, progress=started.append)  # every cell done: nothing trains
    assert started == [] and book.lines() == lines
    assert (tmp_path / "out" / "ablation.md").read_text() == md and second["results"] == first["results"]
