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
CLI); nothing here is a default path.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from prefect.deployments.runner import EntrypointType, RunnerDeployment

STOP_WITHIN = 10.0  # s from a stop signal to serve_deployments returning, server reachable or not
ON_DEMAND = "on-demand"
SCHEDULED = "scheduled"
TAGS = ["morphcat"]


@dataclass(frozen=True)
class AnnotateSchedule:
    """What the scheduled ``catalog-annotate`` deployment runs, and when (a cron string)."""

    cron: str
    catalog: Path
    bundle: Path
    out: Path
    timezone: str = "UTC"
    workers: int = 1


def _on_demand(flow, description: str) -> RunnerDeployment:
    return flow.to_deployment(name=ON_DEMAND, description=description, tags=TAGS,
                              entrypoint_type=EntrypointType.MODULE_PATH)


def build_deployments(schedule: AnnotateSchedule | None = None) -> list[RunnerDeployment]:
    """The deployments ``morphcat serve`` serves; ``schedule`` adds ``catalog-annotate/scheduled``."""
    from prefect.schedules import Cron

    from flows.annotate_flows import catalog_annotate
    from flows.export_flows import export_onnx
    from flows.model_flows import train_models

    deployments = [
        _on_demand(catalog_annotate, "Annotate a catalog with a model bundle: -p catalog=… -p bundle=… -p out=…"),
        _on_demand(train_models, "Train models on catalogs: -p 'catalogs=[\"/abs/a.parquet\"]' -p out=… -p 'models=[\"classifier\", …]'"),
        _on_demand(export_onnx, "Export trained models to a parity-checked ONNX bundle: -p models_dir=… -p out=…"),
    ]
    if schedule is not None:
        deployments.append(catalog_annotate.to_deployment(
            name=SCHEDULED, tags=TAGS, entrypoint_type=EntrypointType.MODULE_PATH,
            schedule=Cron(schedule.cron, timezone=schedule.timezone),
            description=f"Annotate {schedule.catalog} with {schedule.bundle} into {schedule.out} ({schedule.cron})",
            parameters={"catalog": str(Path(schedule.catalog).resolve()), "bundle": str(Path(schedule.bundle).resolve()),
                        "out": str(Path(schedule.out).resolve()), "workers": schedule.workers}))
    return deployments


@dataclass
class ServeEnd:
    """How ``serve_deployments`` ended: the deployments whose schedules it paused, those it could
    not pause (full name → why), and whether the runner stopped within the bound."""

    paused: list[str] = field(default_factory=list)
    not_paused: dict[str, str] = field(default_factory=dict)
    runner_stopped: bool = True


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
