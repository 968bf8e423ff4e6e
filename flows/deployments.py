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

from dataclasses import dataclass
from pathlib import Path

from prefect.deployments.runner import EntrypointType, RunnerDeployment

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


def serve_deployments(schedule: AnnotateSchedule | None = None, limit: int | None = None) -> None:
    """Register the deployments with the Prefect server and run their flow runs until stopped
    (Ctrl-C); ``limit`` caps concurrent runs."""
    from prefect import serve

    serve(*build_deployments(schedule), limit=limit)
