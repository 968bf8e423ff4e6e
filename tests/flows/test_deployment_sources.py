"""``prefect.yaml`` and ``morphcat serve`` declare the same deployments: the file is written from
``flows.deployments`` and must agree with what ``serve`` registers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from catalogs.errors import UsageError
from flows.deployments import NIGHTLY, AnnotateSchedule, ServeEnd, build_deployments, prefect_yaml

REPO = Path(__file__).resolve().parents[2]


def test_prefect_yaml_is_the_one_flows_deployments_writes():
    assert (REPO / "prefect.yaml").read_text() == prefect_yaml(), \
        "regenerate prefect.yaml (see its header) after changing flows/deployments.py"


def _served() -> dict:
    schedule = AnnotateSchedule(cron=NIGHTLY, catalog=Path("/c.parquet"), bundle=Path("/b"), out=Path("/o"))
    return {(d.entrypoint, d.name): d for d in build_deployments(schedule)}


def _declared() -> dict:
    def module_path(entrypoint: str) -> str:  # flows/annotate_flows.py:catalog_annotate → flows.annotate_flows.…
        path, name = entrypoint.split(":")
        return f"{path.removesuffix('.py').replace('/', '.')}.{name}"

    found = yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]
    return {(module_path(d["entrypoint"]), d["name"]): d for d in found}


def test_the_same_flows_under_the_same_names():
    assert _declared().keys() == _served().keys()
    assert len(_declared()) == 4


@pytest.mark.parametrize("key", sorted(_declared()))
def test_each_deployment_agrees_on_description_tags_schedule_and_parameters(key):
    declared, served = _declared()[key], _served()[key]
    assert declared["description"] == served.description
    assert declared["tags"] == served.tags
    schedules = [{"cron": s.schedule.cron, "timezone": s.schedule.timezone} for s in served.schedules or []]
    assert declared.get("schedules", []) == schedules
    # The file's paths come from the environment at `prefect deploy`; the other values are the same.
    parameters = declared.get("parameters", {})
    assert parameters.keys() == served.parameters.keys()
    assert {k: v for k, v in parameters.items() if not str(v).startswith("{{")} == \
        {k: v for k, v in served.parameters.items() if k not in ("catalog", "bundle", "out")}


@pytest.mark.parametrize("end, lines", [
    (ServeEnd(), []),
    (ServeEnd(paused=["a/x", "b/y"]), ["stopped; paused a/x, b/y"]),
    (ServeEnd(not_paused={"a/x": "timeout", "b/y": "timeout", "c/z": "refused"}, runner_stopped=False),
     ["could not pause a/x, b/y (timeout); a schedule among them goes on creating runs until "
      "`prefect deployment pause NAME`",
      "could not pause c/z (refused); a schedule among them goes on creating runs until "
      "`prefect deployment pause NAME`",
      "the runner did not stop in time; exiting without it"]),
])
def test_what_serve_says_when_it_stops(end, lines):
    assert end.report() == lines


@pytest.mark.parametrize("cron, catalog, bundle, out, error", [
    (None, None, None, None, None),
    ("0 3 * * *", "c.parquet", None, None, "`cron` needs `bundle`, `out`"),
    (None, "c.parquet", "b", "o", "give `cron` too"),
])
def test_a_schedule_needs_all_it_annotates(cron, catalog, bundle, out, error):
    if error is None:
        assert AnnotateSchedule.given(cron, catalog, bundle, out) is None
    else:
        with pytest.raises(UsageError, match=re.escape(error)):
            AnnotateSchedule.given(cron, catalog, bundle, out)
