"""Keras models folder → a parity-checked model bundle: the one export-then-validate path.

Steps (the ``export-onnx`` flow runs each as a task; :func:`export_bundle` runs them in turn):

1. :func:`plan_export`: which models the folder has, their common input spec (read back from the
   sidecars), the held-out parity batch; a bad folder or ``--out`` fails here, before any work.
2. :func:`export_and_check` per model: tf2onnx conversion of every file of its spec, then parity
   against Keras (names → shapes → values, then class/caption agreement), failures collected.
3. :func:`check_merged`: the image models composed into one graph (``export.builder.merge``) and the
   same parity checks run on it.
4. :func:`~export.builder.quantize.quantize_models`, :func:`~export.builder.half.halve_models`
   (optional): the merged graph's int8 and float16 copies, each with its agreement with fp32 and
   its gate's verdict.
5. :func:`write_bundle`: one :class:`~export.builder.errors.ParityError` listing every failure of every
   model, or the files with their metadata and ``bundle.json``, published in one move.
"""

from __future__ import annotations

import importlib.metadata
import shutil
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from catalogs.timing import images_per_second
from export.builder.convert import to_onnx
from export.builder.errors import ExportError, ParityError, ParityFailure
from export.builder.images import SYNTHETIC_IMAGES, ParityBatch, catalog_batch, synthetic_batch
from export.builder.merge import merge_image_models
from export.builder.parity import check_names, compare_outputs
from export.builder.publish import check_out, prepare_out, publish, write_manifest
from export.builder.specs import OPSET
from export.builder.units import Source, load_source
from export.serve.bundle import BUNDLE_FORMAT, IMAGE_INPUT, MERGED_NAME
from export.serve.metadata import set_facts
from export.serve.providers import CPU
from export.serve.runtime import create_session
from models.artifacts import catalogs_trained_on, load_sidecar
from models.config import ModelConfig
from models.train import MODEL_KINDS, versions


@dataclass(frozen=True)
class ExportPlan:
    models_dir: Path
    out: Path
    kinds: tuple[str, ...]
    sidecars: dict[str, dict]
    image: dict  # the common ImageSpec, as a dict
    batch: ParityBatch
    catalog: Path | None = None  # where the parity batch came from (and int8's calibration images)


@dataclass
class CheckedModel:
    source: Source
    protos: dict[str, onnx.ModelProto]  # per exported file name, in spec order
    parity: dict  # {"files": {name: {"outputs": {...}}}, agreement figures…}
    failures: list[ParityFailure] = field(default_factory=list)
    got: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # per file: onnxruntime's outputs
    expected: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # per file: Keras's


@dataclass
class MergedModel:
    """``image_models.onnx``: the image-input files in one graph, and its parity figures."""

    proto: onnx.ModelProto
    files: tuple[str, ...]  # the exported files it computes
    parity: dict
    failures: list[ParityFailure] = field(default_factory=list)


def find_models(models_dir: Path) -> tuple[str, ...]:
    """The model kinds ``models_dir`` holds (``<kind>.keras`` with its ``<kind>.json``)."""
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        raise ExportError(f"{models_dir} is not a folder of trained models (`train_models(out={models_dir})`)")
    kinds = tuple(k for k in MODEL_KINDS if (models_dir / f"{k}.keras").is_file())
    if not kinds:
        raise ExportError(f"no trained model in {models_dir}: expected one of "
                          f"{', '.join(f'{k}.keras' for k in MODEL_KINDS)} (`train_models(out={models_dir})`)")
    orphans = [k for k in kinds if not (models_dir / f"{k}.json").is_file()]
    if orphans:
        raise ExportError(f"{models_dir}: {', '.join(f'{k}.keras' for k in orphans)} without the sidecar "
                          f"{', '.join(f'{k}.json' for k in orphans)} that says how to feed it")
    return kinds


def toolchain_versions() -> dict[str, str]:
    return {**versions(), "tf2onnx": importlib.metadata.version("tf2onnx"),
            "onnx": importlib.metadata.version("onnx"), "onnxruntime": ort.__version__}


def training_summary(sidecar: dict) -> dict:
    """What the sidecar says about training: epochs, time, the last epoch's metrics, the best
    validation loss (the weights early stopping restores)."""
    kept = ("epochs_run", "train_seconds", "train_images_per_second", "train_images_per_cpu_second", "precision",
            "trained_jointly",
            "training_mode", "calibration")
    out = {k: sidecar[k] for k in kept
           if k in sidecar}
    history = {k: v for k, v in (sidecar.get("history") or {}).items() if v}
    if history:
        out["final_epoch"] = {k: float(v[-1]) for k, v in sorted(history.items())}
        if "val_loss" in history:
            best = int(np.argmin(history["val_loss"]))
            out["best_val_loss"] = {"epoch": best + 1, "value": float(history["val_loss"][best])}
    return out


def plan_export(models_dir: Path, out: Path, catalog: Path | None = None,
                synthetic_images: int = SYNTHETIC_IMAGES) -> ExportPlan:
    models_dir, out = Path(models_dir), Path(out)
    kinds = find_models(models_dir)
    sidecars = {k: load_sidecar(models_dir, k) for k in kinds}
    specs = {k: ModelConfig.from_dict(s["config"]).image for k, s in sidecars.items()}
    if len(set(specs.values())) > 1:
        raise ExportError(f"the models in {models_dir} take differently prepared images ({specs}); "
                          "a bundle serves one input spec")
    check_out(out)  # before minutes of work
    image = specs[kinds[0]]
    if catalog is not None:
        batch = catalog_batch(Path(catalog), image, sidecars[kinds[0]])
    else:
        batch = synthetic_batch(image, synthetic_images)
    return ExportPlan(models_dir, out, kinds, sidecars, asdict(image), batch, None if catalog is None else Path(catalog))


def export_and_check(plan: ExportPlan, kind: str) -> CheckedModel:
    """Convert every file of ``kind`` and measure its parity with Keras on the plan's batch."""
    source = load_source(plan.models_dir, kind)
    return check_parity(source, convert_source(source), plan.batch.images)


def convert_source(source: Source) -> dict[str, onnx.ModelProto]:
    return {unit.spec.name: to_onnx(unit.spec, unit.function) for unit in source.units}


def check_parity(source: Source, protos: dict[str, onnx.ModelProto], images: np.ndarray) -> CheckedModel:
    """onnxruntime (CPU) on ``protos`` against Keras on the same feeds: names, shapes and values
    per file, then the model's agreement checks; every failure collected."""
    feeds = source.feeds(images)
    sessions, got, expected, files, failures = {}, {}, {}, {}, []
    for unit in source.units:
        name = unit.spec.name
        sessions[name] = session = create_session(protos[name].SerializeToString(), [CPU])
        output_names = [o.name for o in session.get_outputs()]
        failures += check_names(unit.spec, [i.name for i in session.get_inputs()], output_names)
        got[name] = dict(zip(output_names, session.run(None, feeds[name])))
        expected[name] = unit.reference(feeds[name])
        figures, problems = compare_outputs(unit.spec, got[name], expected[name])
        files[name] = {"outputs": figures, "speed": _speed(session, unit, feeds[name], len(images))}
        failures += problems
    if any(f.check in ("names", "shape") for f in failures):
        return CheckedModel(source, protos, {"files": files}, failures)  # agreement needs the right tensors
    agreement, problems = source.agreement(images, sessions, got, expected)
    return CheckedModel(source, protos, {"files": files, **agreement}, failures + problems, got, expected)


def check_merged(checked: list[CheckedModel], images: np.ndarray) -> MergedModel | None:
    """Compose every file that reads only the image into one graph and check it as the files
    were: values against Keras with each file's tolerances, then each model's agreement checks
    with the merged session standing in for its image files. None when fewer than two files
    read the image (nothing to share)."""
    image_files = {u.spec.name: c.protos[u.spec.name] for c in checked for u in c.source.units
                   if [t.name for t in u.spec.inputs] == [IMAGE_INPUT]}
    if len(image_files) < 2 or any(not c.expected for c in checked):
        return None
    proto = merge_image_models(image_files)
    session = create_session(proto.SerializeToString(), [CPU])
    outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, {IMAGE_INPUT: images})))
    figures, failures, agreements = {}, [], {}
    for c in checked:
        sessions, got = {}, dict(c.got)
        for unit in c.source.units:
            name = unit.spec.name
            if name in image_files:
                sessions[name] = session
                got[name] = {t.name: outputs[t.name] for t in unit.spec.outputs}
                figures[name], problems = compare_outputs(unit.spec, got[name], c.expected[name])
                failures += problems
            else:
                sessions[name] = create_session(c.protos[name].SerializeToString(), [CPU])
        agreement, problems = c.source.agreement(images, sessions, got, c.expected)
        agreements.update(agreement)
        failures += problems
    separate = 1.0 / sum(1.0 / c.parity["files"][n]["speed"]["ort_rows_per_s"]
                         for c in checked for n in c.parity["files"] if n in image_files)
    speed = {"rows": len(images), "ort_rows_per_s": round(images_per_second(
        lambda: session.run(None, {IMAGE_INPUT: images}), len(images)), 1),
        "separate_files_rows_per_s": round(separate, 1)}
    return MergedModel(proto, tuple(image_files), {"files": figures, "speed": speed, **agreements},
                       [replace(f, model=f"{MERGED_NAME} ({f.model})") for f in failures])


def _speed(session, unit, feeds: dict, n: int) -> dict:
    """Rows per second of onnxruntime (CPU) and of Keras computing the same outputs on the same
    feeds, measured alike (``catalogs.timing``)."""
    return {"rows": n, "ort_rows_per_s": round(images_per_second(lambda: session.run(None, feeds), n), 1),
            "keras_rows_per_s": round(images_per_second(lambda: unit.reference(feeds), n), 1)}


def _file_facts(plan: ExportPlan, checked: CheckedModel, entry: dict, name: str) -> dict:
    spec = next(u.spec for u in checked.source.units if u.spec.name == name)
    facts = {k: v for k, v in entry.items() if k not in ("files", "specs")}
    return {**facts, "format": BUNDLE_FORMAT, "model": name, "image": plan.image, "spec": spec.to_dict(),
            "opset": spec.opset, "versions": toolchain_versions(),
            "parity": {**{k: v for k, v in checked.parity.items() if k != "files"}, **checked.parity["files"][name]}}


def raise_for_failures(checked: list[CheckedModel], merged: MergedModel | None = None) -> None:
    failures = [f for c in checked for f in c.failures] + ([] if merged is None else merged.failures)
    if failures:
        raise ParityError(failures)


def _model_entry(plan: ExportPlan, checked: CheckedModel) -> dict:
    kind = checked.source.kind
    return {**checked.source.facts, "kind": kind,
            "files": {n: f"{n}.onnx" for n in checked.protos},
            "specs": {u.spec.name: u.spec.to_dict() for u in checked.source.units},
            "training": training_summary(plan.sidecars[kind]),
            "source": {"models_dir": str(plan.models_dir),
                       "catalogs": catalogs_trained_on(plan.sidecars[kind])}}


def _opset(protos: list[onnx.ModelProto]) -> int:
    """The newest default-domain opset any file imports (quantisation may add operators)."""
    return max(o.version for p in protos for o in p.opset_import if o.domain in ("", "ai.onnx"))


def write_bundle(plan: ExportPlan, checked: list[CheckedModel], variants: dict[str, dict] | None = None,
                 merged: MergedModel | None = None) -> dict:
    """Raise one :class:`ParityError` for every failure of every model, else write the files
    with their metadata and ``bundle.json`` into a staging folder and publish it as ``plan.out``.
    ``variants``: precision (``int8``, ``fp16``) → the merged graph's copy in it, with its
    comparison and gate (``export.builder.quantize``, ``export.builder.half``)."""
    raise_for_failures(checked, merged)
    staging = prepare_out(plan.out)
    try:
        models, written = {}, {}
        for c in checked:
            entry = models[c.source.kind] = _model_entry(plan, c)
            for name, proto in c.protos.items():
                set_facts(proto, _file_facts(plan, c, entry, name))
                written[entry["files"][name]] = proto
        merged_entry = None
        if merged is not None:
            merged_entry = {"file": f"{MERGED_NAME}.onnx", "computes": list(merged.files),
                            "outputs": [o.name for o in merged.proto.graph.output]}
            set_facts(merged.proto, {"format": BUNDLE_FORMAT, "model": MERGED_NAME, "image": plan.image,
                                     **merged_entry, "opset": OPSET, "versions": toolchain_versions()})
            written[merged_entry["file"]] = merged.proto
        variant_entries = {}
        for precision, variant in (variants or {}).items():
            variant_entries[precision] = {k: v for k, v in variant.items() if k != "proto"}
            set_facts(variant["proto"], {"format": BUNDLE_FORMAT, "model": variant["file"].removesuffix(".onnx"),
                                         "image": plan.image, "computes": list(merged.files),
                                         "precision": precision, "gate": variant["gate"],
                                         "versions": toolchain_versions()})
            written[variant["file"]] = variant["proto"]
        for file, proto in written.items():
            onnx.save(proto, staging / file)
        manifest = {
            "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "image": plan.image,
            "models": models,
            "opset": OPSET,
            "requires": {"onnxruntime": ".".join(ort.__version__.split(".")[:2]),
                         "opset": _opset(list(written.values()))},
            "versions": toolchain_versions(),
            "parity": {"batch": plan.batch.source, "n_images": int(len(plan.batch.images)), "passed": True,
                       "models": {c.source.kind: c.parity for c in checked}},
        }
        if merged_entry is not None:
            manifest["merged"] = merged_entry
            manifest["parity"]["merged"] = merged.parity
        manifest.update(variant_entries)
        manifest = write_manifest(staging, manifest, list(written))
        publish(staging, plan.out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def export_bundle(models_dir: Path, out: Path, *, catalog: Path | None = None, int8: bool = False,
                  fp16: bool = False, synthetic_images: int = SYNTHETIC_IMAGES) -> dict:
    """Export every model in ``models_dir`` to a bundle at ``out``; returns its manifest."""
    plan = plan_export(models_dir, out, catalog, synthetic_images)
    checked = [export_and_check(plan, kind) for kind in plan.kinds]
    raise_for_failures(checked)
    merged = check_merged(checked, plan.batch.images)
    raise_for_failures(checked, merged)
    variants = {}
    if int8:
        from export.builder.quantize import quantize_models

        variants["int8"] = quantize_models(plan, checked, merged)
    if fp16:
        from export.builder.half import halve_models

        variants["fp16"] = halve_models(plan, checked, merged)
    return write_bundle(plan, checked, variants, merged)
