"""Prefect flow ``export-onnx``: trained Keras models → a parity-checked ONNX model bundle, by
:func:`export.builder.exporter.export_bundle` (the one export pipeline), and its report as a
Prefect artifact."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE


@task(cache_policy=NO_CACHE)
def export_models(models_dir: Path, out: Path, catalog: Path | None, int8: bool, fp16: bool) -> dict:
    from export.builder.exporter import export_bundle

    return export_bundle(models_dir, out, catalog=catalog, int8=int8, fp16=fp16)


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
    manifest = export_models(Path(models_dir), Path(out), None if catalog is None else Path(catalog), int8, fp16)
    publish_report(manifest, Path(out))
    return manifest
