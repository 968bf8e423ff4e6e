"""``morphcat bench throughput``: annotate throughput of morphcat against the Keras path, the seed project's
captioning and the machine's limits, side by side in one process tree on one machine.

Stages, on a synthetic catalog of N 424×424 JPEGs and one set of trained models (``--models``,
or default-architecture models trained for one epoch here: throughput depends on the
architecture, not on how well it was trained) exported to one bundle:

- ``morphcat``: ``export.serve.catalog.annotate_catalog`` end to end, what ``morphcat annotate``
  runs inside its Prefect flow (decode, classifier + Grad-CAM, regressor, captions, Grad-CAM
  statistics, Parquet), into a fresh output folder each time;
- ``keras``: :mod:`benchmarks.keras_path` on the same trained models;
- ``decode``: morphcat's decoder alone (same decoder, same threads): the input limit;
- ``ort``: the bundle's sessions alone on pre-decoded tensors: the inference limit;
- ``seed``: the seed project's per-image captioning (:mod:`benchmarks.seed_path`) on a few images;
- memory: peak RSS of a fresh process annotating N rows, then 10·N (the same images reused
  through their paths).

Each throughput is the median of ``repeats`` timed runs after one untimed warm-up run.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from catalogs.contract import Catalog, read_catalog, write_catalog
from catalogs.decoding import BATCH_SIZE
from catalogs.synthetic import synthesize_survey
from catalogs.timing import median_seconds, timed_rates
from models.precision import cpu_flags

TARGETS = {  # name: (what it is, target, True when higher is better)
    "speedup_vs_keras": ("morphcat ÷ Keras path images/s", 4.0, True),
    "efficiency": ("morphcat ÷ min(decode-only, ORT-only) images/s", 0.85, True),
    "caption_speedup": ("seed ÷ morphcat seconds per caption", 50.0, True),
    "rss_ratio": ("peak RSS at 10·N ÷ at N", 1.2, False),
}


@dataclass(frozen=True)
class BenchSettings:
    n: int = 1000
    repeats: int = 3
    batch_size: int = BATCH_SIZE
    seed_images: int = 5  # images the seed path captions (each reloads the model)
    models_dir: Path | None = None  # trained models to measure; None: train throw-away ones
    train_galaxies: int = 64  # size of the survey the throw-away models train on
    seed: int = 0

    def __post_init__(self) -> None:
        small = {k: v for k, v in (("n", self.n), ("repeats", self.repeats), ("batch_size", self.batch_size),
                                   ("seed_images", self.seed_images), ("train_galaxies", self.train_galaxies))
                 if v < 1}
        if small:
            raise ValueError(f"benchmark settings must be ≥ 1: {small}")


def median_rate(run: Callable[[], int], repeats: int) -> tuple[float, list[float]]:
    """Median rows per second of ``repeats`` timed calls of ``run`` after a warm-up
    (``catalogs.timing.timed_rates``), and every timed rate."""
    rates = timed_rates(run, repeats)
    return float(np.median(rates)), rates


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30 if hasattr(os, "sysconf") else None
    import onnxruntime as ort

    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": None if memory is None else round(memory, 1),
            "cpu_flags": cpu_flags(), "platform": platform.platform(), "python": platform.python_version(),
            "onnxruntime": ort.__version__, "tensorflow": installed_version("tensorflow")}


def installed_version(package: str) -> str | None:
    """``package``'s installed version, read without importing it (the benchmarks that need no
    TensorFlow never start it), or None where it is not installed."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_line(m: dict) -> str:
    return f"{m['cpu']}, {m['cores']} cores, flags {' '.join(m['cpu_flags']) or 'unknown'}"


def build_inputs(out: Path, settings: BenchSettings) -> tuple[Path, Path, Path, Path]:
    """The N-galaxy catalog, its 10·N twin (the same images under new ids), the models and the
    bundle, under ``out``."""
    from export.builder.exporter import export_bundle

    survey = out / "survey"
    catalog = survey / "catalog.parquet"
    if not catalog.is_file():
        synthesize_survey(out=survey, n=settings.n, seed=settings.seed, mix="balanced")
    catalog_10n = survey / "catalog-10n.parquet"
    if not catalog_10n.is_file():
        write_catalog(repeated(read_catalog(catalog), 10), catalog_10n)
    models_dir = settings.models_dir
    if models_dir is None:
        models_dir = out / "models"
        if not (models_dir / "captioner.keras").is_file():
            train_throwaway_models(out / "train-survey", models_dir, settings)
    bundle = out / "bundle"
    export_bundle(Path(models_dir), bundle)
    return catalog, catalog_10n, Path(models_dir), bundle


def repeated(catalog: Catalog, times: int) -> Catalog:
    """``catalog``'s rows ``times`` over, ids suffixed ``-1``…: a large catalog from few images."""
    parts = []
    for k in range(times):
        t = catalog.table
        ids = pc.binary_join_element_wise(t.column("object_id"), pa.scalar(f"-{k}"), "")
        parts.append(t.set_column(t.schema.get_field_index("object_id"), "object_id", ids))
    return Catalog(pa.concat_tables(parts), catalog.root, catalog.source_format)


def train_throwaway_models(survey: Path, models_dir: Path, settings: BenchSettings) -> None:
    from models.pipeline import train_models

    catalog = synthesize_survey(out=survey, n=settings.train_galaxies, seed=settings.seed + 1, mix="balanced")
    train_models(catalogs=[catalog], out=models_dir,
                 models=["classifier", "regressor", "captioner"], epochs=1, seed=settings.seed)


def annotate_in_fresh_process(catalog: Path, bundle: Path, out: Path, batch_size: int) -> dict:
    """The summary of an annotation run in a new Python process (its peak RSS is then
    that run's alone)."""
    proc = subprocess.run([sys.executable, "-m", "benchmarks.child", str(catalog), str(bundle), str(out),
                           str(batch_size)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"the annotate child failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_benchmark(out: Path, settings: BenchSettings, log: Callable[[str], None] = print) -> dict:
    from benchmarks.keras_path import KerasPath
    from benchmarks.seed_path import seed_seconds_per_image
    from catalogs.decoding import iter_model_inputs
    from export.serve.catalog import annotate_catalog
    from export.serve.runtime import open_bundle
    from export.serve.shard import threads_per_worker

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    log("building the catalog, models and bundle…")
    catalog_path, catalog_10n, models_dir, bundle_path = build_inputs(out, settings)
    catalog = read_catalog(catalog_path)
    paths = catalog.table.column("image_path").to_pylist()
    files = [str(catalog.root / p) for p in paths]
    n, reps, batch = len(paths), settings.repeats, settings.batch_size
    threads = threads_per_worker(1)
    bundle = open_bundle(bundle_path, intra_op_threads=threads)
    rates: dict[str, list[float]] = {}
    result: dict = {"n": n, "repeats": reps, "batch_size": batch, "threads": threads, "provider": bundle.provider,
                    "bundle_id": bundle.bundle_id, "models_dir": str(models_dir), "machine": machine()}

    log("decode only…")
    result["decode_ips"], rates["decode"] = median_rate(
        lambda: sum(len(b.rows) for b in iter_model_inputs(catalog.root, paths, bundle.image, batch_size=batch,
                                                           workers=threads)), reps)
    pixels = np.concatenate([b.pixels for b in iter_model_inputs(catalog.root, paths, bundle.image,
                                                                  batch_size=batch, workers=threads)])

    log("onnxruntime only…")

    def ort_only() -> int:  # exactly the calls annotation makes (export.serve.annotate)
        for i in range(0, n, batch):
            outputs = bundle.infer(pixels[i:i + batch])
            bundle.captions_from_state(outputs["h0"], outputs["c0"])
        return n

    result["ort_ips"], rates["ort"] = median_rate(ort_only, reps)
    result.update(embedding_cost(bundle_path, pixels, threads, reps, batch))
    # Captioning on its own (encoder + batched greedy steps), comparable with the seed's per image.
    captions_ips, rates["captions"] = median_rate(
        lambda: sum(len(bundle.captions(pixels[i:i + batch])) for i in range(0, n, batch)), reps)
    result["morphcat_caption_s_per_image"] = 1.0 / captions_ips

    log("morphcat (annotate_catalog)…")
    runs = iter(range(reps + 1))

    def morphcat() -> int:
        summary = annotate_catalog(catalog=catalog_path, bundle=bundle_path, out=out / "runs" / f"rep{next(runs)}",
                                   batch_size=batch)
        return summary["rows_this_run"]

    result["morphcat_ips"], rates["morphcat"] = median_rate(morphcat, reps)

    log("the fixed cost of a run and the machine's peak…")
    result.update(fixed_costs(catalog_path, bundle_path, out / "runs" / "fixed", batch, reps, threads))
    result.update(roofline(bundle, bundle_path, pixels[:batch], threads))

    log("Keras path…")
    keras_path = KerasPath(models_dir)
    result["keras_ips"], rates["keras"] = median_rate(lambda: keras_path.annotate(files, batch), reps)

    log(f"seed captioning on {settings.seed_images} images…")
    result["seed_caption_s_per_image"], _ = seed_seconds_per_image(models_dir, pixels[:settings.seed_images])
    result["seed_images"] = int(min(settings.seed_images, n))

    log(f"peak memory: fresh processes annotating {n} and {10 * n} rows…")
    small = annotate_in_fresh_process(catalog_path, bundle_path, out / "runs" / "rss-n", batch)
    large = annotate_in_fresh_process(catalog_10n, bundle_path, out / "runs" / "rss-10n", batch)
    result["rss_n_mb"], result["rss_10n_mb"] = small["peak_rss_mb"], large["peak_rss_mb"]
    result["rss_10n_images_per_second"] = large["images_per_second"]

    result["rates"] = rates
    result.update(derived(result))
    result["settings"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(settings).items()}
    return result


def embedding_cost(bundle_path: Path, pixels: np.ndarray, threads: int, repeats: int, batch: int) -> dict:
    """What the ``embedding`` output costs: the bundle's image graph with every output, against
    the same graph without that output (onnxruntime then drops the nodes only it needs), timed
    in alternation on the same pre-decoded images."""
    import onnx

    from catalogs.decoding import to_model_floats
    from catalogs.inputs import ImageSpec
    from catalogs.outputs import EMBEDDING
    from export.serve.bundle import IMAGE_INPUT, read_manifest
    from export.serve.providers import CPU
    from export.serve.runtime import create_session

    manifest = read_manifest(bundle_path)
    name = manifest["merged"]["file"] if "merged" in manifest else manifest["models"]["classifier"]["files"]["classifier"]
    full = onnx.load(str(bundle_path / name))
    without = onnx.ModelProto()
    without.CopyFrom(full)
    kept = [o for o in without.graph.output if o.name != EMBEDDING]
    del without.graph.output[:]
    without.graph.output.extend(kept)
    sessions = {"with": create_session(full.SerializeToString(), [CPU], threads),
                "without": create_session(without.SerializeToString(), [CPU], threads)}
    x = to_model_floats(pixels, ImageSpec(**manifest["image"]))
    rates: dict[str, list[float]] = {"with": [], "without": []}
    for rep in range(repeats + 1):  # the first round warms both up
        for key, session in sessions.items():
            t = time.perf_counter()
            for i in range(0, len(x), batch):
                session.run(None, {IMAGE_INPUT: x[i:i + batch]})
            if rep:
                rates[key].append(len(x) / (time.perf_counter() - t))
    with_ips, without_ips = float(np.median(rates["with"])), float(np.median(rates["without"]))
    return {"image_graph_ips": round(with_ips, 1), "image_graph_without_embedding_ips": round(without_ips, 1),
            "embedding_cost_fraction": round(1.0 - with_ips / without_ips, 4)}


def fixed_costs(catalog_path: Path, bundle: Path, out: Path, batch: int, repeats: int, threads: int) -> dict:
    """What every run pays whatever its size, each the median of ``repeats`` after a warm-up:

    - ``fixed_seconds``: an ``annotate_catalog`` run of one image in a warm process (planning,
      the catalog check, the bundle from the process's cache, accounting, the summary);
    - ``bundle_open_seconds``: opening the bundle anew (verification, onnxruntime sessions, the
      int8 probe), which a fresh worker process pays once;
    - ``catalog_open_seconds``: reading and validating the N-row catalog.
    """
    from export.serve.catalog import annotate_catalog
    from export.serve.runtime import open_bundle

    catalog = read_catalog(catalog_path)
    one = out / "catalog.parquet"
    write_catalog(Catalog(catalog.table.slice(0, 1), catalog.root, catalog.source_format), one)
    runs = iter(range(repeats + 1))

    def median(call: Callable[[], object]) -> float:
        return round(median_seconds(call, repeats), 3)

    def annotate_one() -> None:
        annotate_catalog(catalog=one, bundle=bundle, out=out / f"run{next(runs)}", batch_size=batch)

    result = {"fixed_seconds": median(annotate_one)}
    result["bundle_open_seconds"] = median(lambda: open_bundle(bundle, intra_op_threads=threads))
    result["catalog_open_seconds"] = median(lambda: read_catalog(catalog_path))
    return result


def roofline(bundle, bundle_path: Path, pixels: np.ndarray, threads: int) -> dict:
    """FLOPs per image of what annotation runs (the merged image graph as onnxruntime optimises
    it, and the captioner's decoding steps × the mean caption length), and the machine's peak."""
    from benchmarks.flops import graph_flops
    from benchmarks.roofline import peak_gflops
    from catalogs.tokenizer import tokenize

    files = bundle.manifest["files"]
    image_graph = "image_models.onnx" if "image_models.onnx" in files else "classifier.onnx"
    flops = graph_flops(bundle_path / image_graph)["total"]
    if bundle.caption_source == "learned":
        steps = np.mean([len(tokenize(c)) + 1 for c in bundle.captions(pixels)])
        flops += graph_flops(bundle_path / "captioner_step.onnx")["total"] * steps
    return {"model_gflop_per_image": round(flops / 1e9, 4), **peak_gflops(threads)}


def derived(r: dict) -> dict:
    """The ratios the targets are about, and whether each is met."""
    # Decoding and inference share the same cores: at best they take turns without overhead.
    serial = 1.0 / (1.0 / r["decode_ips"] + 1.0 / r["ort_ips"])
    ratios = {
        "speedup_vs_keras": r["morphcat_ips"] / r["keras_ips"],
        "efficiency": r["morphcat_ips"] / min(r["decode_ips"], r["ort_ips"]),
        "caption_speedup": r["seed_caption_s_per_image"] / r["morphcat_caption_s_per_image"],
        "rss_ratio": r["rss_10n_mb"] / r["rss_n_mb"],
    }
    targets = {name: {"what": what, "value": round(ratios[name], 3), "target": target, "higher_is_better": higher,
                      "met": bool(ratios[name] >= target if higher else ratios[name] <= target)}
               for name, (what, target, higher) in TARGETS.items()}
    out = {**{k: round(v, 3) for k, v in ratios.items()}, "serial_limit_ips": round(serial, 1),
           "efficiency_vs_serial_limit": round(r["morphcat_ips"] / serial, 3), "targets": targets}
    if "peak_gflops" in r:  # the roofline: achieved GFLOP/s against the machine's measured peak
        out.update(ort_gflops=round(r["ort_ips"] * r["model_gflop_per_image"], 1),
                   ort_fraction_of_peak=round(r["ort_ips"] * r["model_gflop_per_image"] / r["peak_gflops"], 3),
                   pipeline_gflops=round(r["morphcat_ips"] * r["model_gflop_per_image"], 1),
                   pipeline_fraction_of_peak=round(r["morphcat_ips"] * r["model_gflop_per_image"] / r["peak_gflops"], 3),
                   pipeline_fraction_of_limit=round(r["morphcat_ips"] / serial, 3))
    return out
