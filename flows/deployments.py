"""Deployments of morphcat's flows, served from one long-running process (``morphcat serve``).

Served against a real Prefect server (``prefect server start``), they are what users start with
``prefect deployment run 'catalog-annotate/on-demand' -p catalog=… -p bundle=… -p out=… --watch``:

- ``catalog-annotate/on-demand``, ``train-models/on-demand``, ``export-onnx/on-demand``: no
  schedule and no fixed parameters; each run names its inputs with ``-p``.
- ``catalog-annotate/scheduled`` (only when a cron is given): annotates one catalog with one bundle
  on a cron schedule. Finished shards are skipped, so a scheduled run costs nothing until the
  bundle at that path changes (a new bundle id is a new run in the same folder).

The entrypoints are module paths (``flows.annotate_flows.catalog_annotate``), so runs work from
any working directory where morphcat is installed. Concrete values come from the caller (the
CLI); nothing here is a default path. Each deployment is declared once, here: ``prefect.yaml``
(the same deployments on a process work pool, the scheduled one nightly) is written from these
declarations by :func:`prefect_yaml`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from prefect.deployments.runner import EntrypointType, RunnerDeployment

from catalogs.errors import UsageError

STOP_WITHIN = 10.0  # s from a stop signal to serve_deployments returning, server reachable or not
ON_DEMAND = "on-demand"
SCHEDULED = "scheduled"
TAGS = ["morphcat"]
NIGHTLY = "0 3 * * *"  # prefect.yaml's schedule of catalog-annotate/scheduled, in UTC
POOL = "morphcat"  # prefect.yaml's process work pool


@dataclass(frozen=True)
class Deployment:
    """One deployment of a flow (``flow``: its module path) as ``morphcat serve`` and
    ``prefect.yaml`` both declare it."""

    flow: str
    name: str
    description: str


ANNOTATE = "flows.annotate_flows.catalog_annotate"
ON_DEMAND_DEPLOYMENTS = (
    Deployment(ANNOTATE, ON_DEMAND, "Annotate a catalog with a model bundle: -p catalog=… -p bundle=… -p out=…"),
    Deployment("flows.model_flows.train_models", ON_DEMAND,
               "Train models on catalogs: -p 'catalogs=[\"/abs/a.parquet\"]' -p out=… -p 'models=[\"classifier\", …]'"),
    Deployment("flows.export_flows.export_onnx", ON_DEMAND,
               "Export trained models to a parity-checked ONNX bundle: -p models_dir=… -p out=…"),
)
SCHEDULED_DEPLOYMENT = Deployment(ANNOTATE, SCHEDULED, "Annotate one catalog with one bundle on a cron schedule; "
                                  "finished shards are skipped, so a run costs nothing until the bundle changes")


@dataclass(frozen=True)
class AnnotateSchedule:
    """What the scheduled ``catalog-annotate`` deployment runs, and when (a cron string)."""

    cron: str
    catalog: Path
    bundle: Path
    out: Path
    timezone: str = "UTC"
    workers: int = 1

    @classmethod
    def given(cls, cron: str | None, catalog: Path | None, bundle: Path | None, out: Path | None,
              timezone: str = "UTC", workers: int = 1) -> "AnnotateSchedule | None":
        """The schedule, or None without a ``cron``; refuses a schedule without all it annotates."""
        given = {"catalog": catalog, "bundle": bundle, "out": out}
        if cron is None:
            if any(value is not None for value in given.values()):
                raise UsageError("`catalog`, `bundle` and `out` set the scheduled run: give `cron` too "
                                 "(on-demand runs take them as -p parameters)")
            return None
        missing = [f"`{name}`" for name, value in given.items() if value is None]
        if missing:
            raise UsageError(f"`cron` needs {', '.join(missing)}: what the scheduled run annotates")
        return cls(cron, Path(catalog), Path(bundle), Path(out), timezone, workers)

    def parameters(self) -> dict:
        return {"catalog": str(Path(self.catalog).resolve()), "bundle": str(Path(self.bundle).resolve()),
                "out": str(Path(self.out).resolve()), "workers": self.workers}


def build_deployments(schedule: AnnotateSchedule | None = None) -> list[RunnerDeployment]:
    """The deployments ``morphcat serve`` serves; ``schedule`` adds ``catalog-annotate/scheduled``."""
    from prefect.schedules import Cron

    from flows.annotate_flows import catalog_annotate
    from flows.export_flows import export_onnx
    from flows.model_flows import train_models

    flows = {f"{f.fn.__module__}.{f.fn.__name__}": f for f in (catalog_annotate, train_models, export_onnx)}

    def deployment(d: Deployment, **more) -> RunnerDeployment:
        return flows[d.flow].to_deployment(name=d.name, description=d.description, tags=TAGS,
                                           entrypoint_type=EntrypointType.MODULE_PATH, **more)

    deployments = [deployment(d) for d in ON_DEMAND_DEPLOYMENTS]
    if schedule is not None:
        deployments.append(deployment(SCHEDULED_DEPLOYMENT, schedule=Cron(schedule.cron, timezone=schedule.timezone),
                                      parameters=schedule.parameters()))
    return deployments


PREFECT_YAML_HEAD = """\
# morphcat's flows as deployments on a Prefect process work pool (see docs/deployments.md):
#
#   prefect work-pool create morphcat --type process
#   export MORPHCAT_NIGHTLY_CATALOG=/abs/catalog.parquet MORPHCAT_NIGHTLY_BUNDLE=/abs/bundle \\
#          MORPHCAT_NIGHTLY_OUT=/abs/annotations
#   prefect deploy --all                       # from this folder; the nightly paths are read now
#   prefect worker start --pool morphcat       # where morphcat is installed and the data readable
#   prefect deployment run 'catalog-annotate/on-demand' -p catalog=… -p bundle=… -p out=… --watch
#
# `morphcat serve` serves the same flows from one process without a pool, for the one-command case.
# Written by flows.deployments.prefect_yaml() from the deployments `morphcat serve` declares:
#   python -c 'from flows.deployments import prefect_yaml; print(prefect_yaml(), end="")' > prefect.yaml
"""


def prefect_yaml() -> str:
    """``prefect.yaml``: the on-demand deployments, and the scheduled one running nightly on the
    paths in ``MORPHCAT_NIGHTLY_CATALOG``, ``…_BUNDLE`` and ``…_OUT`` (read at ``prefect deploy``)."""
    import prefect
    import yaml

    def entry(d: Deployment, **more) -> dict:
        module, name = d.flow.rsplit(".", 1)
        return {"name": d.name, "description": d.description, "entrypoint": f"{module.replace('.', '/')}.py:{name}",
                "tags": list(TAGS), **more, "work_pool": {"name": POOL, "job_variables": {}}}

    nightly = {"schedules": [{"cron": NIGHTLY, "timezone": "UTC"}],
               "parameters": {**{k: f"{{{{ $MORPHCAT_NIGHTLY_{k.upper()} }}}}" for k in ("catalog", "bundle", "out")},
                              "workers": 1}}
    annotate, *others = ON_DEMAND_DEPLOYMENTS
    body = {"name": "morphcat", "prefect-version": prefect.__version__, "build": None, "push": None,
            "deployments": [entry(annotate), entry(SCHEDULED_DEPLOYMENT, **nightly), *map(entry, others)]}
    return PREFECT_YAML_HEAD + "\n" + yaml.safe_dump(body, sort_keys=False, allow_unicode=True, width=200)


@dataclass
class ServeEnd:
    """How ``serve_deployments`` ended: the deployments whose schedules it paused, those it could
    not pause (full name → why), and whether the runner stopped within the bound."""

    paused: list[str] = field(default_factory=list)
    not_paused: dict[str, str] = field(default_factory=dict)
    runner_stopped: bool = True

    def report(self) -> list[str]:
        """What the stop did, a line each, for whoever stopped it."""
        lines = [f"stopped; paused {', '.join(self.paused)}"] if self.paused else []
        reasons: dict[str, list[str]] = {}
        for name, why in self.not_paused.items():
            reasons.setdefault(why, []).append(name)
        lines += [f"could not pause {', '.join(names)} ({why}); a schedule among them goes on creating runs until "
                  "`prefect deployment pause NAME`" for why, names in reasons.items()]
        return lines + ([] if self.runner_stopped else ["the runner did not stop in time; exiting without it"])


def serve_deployments(schedule: AnnotateSchedule | None = None, limit: int | None = None,
                      stop_within: float = STOP_WITHIN, on_serving=None) -> ServeEnd:
    """Register the deployments with the Prefect server and run their flow runs until a
    KeyboardInterrupt (Ctrl-C; the CLI turns SIGTERM into one too); ``limit`` caps concurrent
    runs; ``on_serving`` is called with the deployments' full names once they are registered.
    Then stop the runner and pause the deployments' schedules, all within ``stop_within`` seconds
    whether or not the server answers, and say what was done.

    Not Prefect's ``serve()``: on SIGTERM it calls the runner's async ``stop()`` without awaiting
    it, and its pause-on-shutdown retries an unreachable server without end. Here the runner's
    loop runs in a thread, so the signal reaches this (main) thread, which bounds every step."""
    from prefect.runner import Runner

    runner = Runner(pause_on_shutdown=False, limit=limit)
    registered = {d.full_name: runner.add_deployment(d) for d in build_deployments(schedule)}
    if on_serving is not None:
        on_serving(list(registered))
    loop = asyncio.new_event_loop()
    serving = loop.create_task(runner.start())
    thread = threading.Thread(target=_run, args=(loop, serving), name="morphcat-serve", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.5)  # short waits: signal handlers run in this thread between them
    except KeyboardInterrupt:
        deadline = time.monotonic() + stop_within
        loop.call_soon_threadsafe(serving.cancel)
        thread.join(stop_within / 2)
        end = _pause(registered, deadline)
        end.runner_stopped = not thread.is_alive()
        return end
    serving.result()  # the runner ended on its own: its error, if any, is the caller's
    return ServeEnd()


def _run(loop: asyncio.AbstractEventLoop, task: asyncio.Task) -> None:
    try:
        loop.run_until_complete(task)
    except BaseException:  # noqa: BLE001 - the task keeps its outcome; serve_deployments reads it there
        pass


def _pause(registered: dict, deadline: float) -> ServeEnd:
    """Pause each deployment's schedule, giving up at ``deadline`` (``time.monotonic()``)."""
    import anyio
    from prefect.client.orchestration import get_client

    end = ServeEnd()

    async def pause_all():
        async with get_client() as client:
            for name, deployment_id in registered.items():
                try:
                    await client.pause_deployment(deployment_id)
                    end.paused.append(name)
                except Exception as exc:  # noqa: BLE001 - any failure of one call is that deployment's reason
                    end.not_paused[name] = f"{type(exc).__name__}: {exc}"

    async def bounded():
        with anyio.move_on_after(max(0.0, deadline - time.monotonic())):
            await pause_all()
        for name in sorted(registered.keys() - set(end.paused) - end.not_paused.keys()):
            end.not_paused[name] = "the Prefect server did not answer in time"

    asyncio.run(bounded())
    return end
