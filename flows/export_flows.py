"""Prefect flow ``export-onnx``: trained Keras models → a parity-checked ONNX model bundle.
Orchestration only; conversion, parity and the bundle format live in ``export/``."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE


@task(cache_policy=NO_CACHE)
def plan_export(models_dir: Path, out: Path, catalog: Path | None):
    from export.builder.exporter import plan_export as plan

    return plan(models_dir, out, catalog)


@task(cache_policy=NO_CACHE, task_run_name="export-and-check-{kind}")
def export_and_check(plan, kind: str):
    from export.builder.exporter import export_and_check as export

    return export(plan, kind)


@task(cache_policy=NO_CACHE)
def merge_and_check(plan, checked):
    from export.builder.exporter import check_merged

    return check_merged(checked, plan.batch.images)


@task(cache_policy=NO_CACHE)
def quantize_int8(plan, checked, merged):
    from export.builder.quantize import quantize_models

    return quantize_models(plan, checked, merged)


@task(cache_policy=NO_CACHE)
def halve_fp16(plan, checked, merged):
    from export.builder.half import halve_models

    return halve_models(plan, checked, merged)


@task(cache_policy=NO_CACHE)
def write_bundle(plan, checked, variants, merged) -> dict:
    from export.builder.exporter import write_bundle as write

    return write(plan, checked, variants, merged)


@task(cache_policy=NO_CACHE)
def publish_report(manifest: dict, out: Path) -> str:
    from export.builder.report import bundle_markdown

    markdown = bundle_markdown(manifest, str(out))
    create_markdown_artifact(markdown, key="model-bundle", description=f"morphcat export → {out}")
    return markdown


@flow(name="export-onnx")
def export_onnx(models_dir: Path, out: Path, catalog: Path | None = None, int8: bool = False,
                fp16: bool = False) -> dict:
    """``catalog``: take the parity images from it (its held-out test split when it trained the
    models); without it, synthetic-survey galaxies. ``int8`` / ``fp16``: add the merged graph's
    int8 (for CPUs) / float16 (for GPUs) copy, gated on its agreement with fp32."""
    from export.builder.exporter import raise_for_failures

    plan = plan_export(Path(models_dir), Path(out), None if catalog is None else Path(catalog))
    checked = [export_and_check(plan, kind) for kind in plan.kinds]
    raise_for_failures(checked)  # one ParityError for every model, before any quantisation
    merged = merge_and_check(plan, checked)
    raise_for_failures(checked, merged)
    variants = {}
    if int8:
        variants["int8"] = quantize_int8(plan, checked, merged)
    if fp16:
        variants["fp16"] = halve_fp16(plan, checked, merged)
    manifest = write_bundle(plan, checked, variants, merged)
    publish_report(manifest, Path(out))
    return manifest
