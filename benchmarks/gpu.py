"""``morphcat bench gpu`` (what ``benchmarks/gpu.sh`` runs): the image graph on a GPU at several
input sizes, fp32 against float16, and annotation end to end with its decode stage.

On the device ``--device`` names (``auto``: CUDA when it can run here, else the CPU, said plainly):

1. for each input size (default 64, 128 and 224 px), default-architecture models trained for one
   epoch on a small synthetic survey (throughput depends on the architecture, not on training)
   and exported with ``--fp16``; the merged image graph's images/s at ``--batch`` (default 256)
   in fp32 and in float16 on pre-made inputs (host → device copy included), the best of a few
   timed runs after a warm-up, and float16's class agreement with fp32 on that device;
2. for the first size, ``catalog-annotate`` end to end over ``--n`` synthetic 424 px JPEGs with
   the device's precision chosen as users get it (``--precision auto``), beside decode alone
   (every core) and the bundle's inference alone: which of the two is the limit, and by how much.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from benchmarks.report import write_summary
from benchmarks.run import machine, machine_line
from catalogs.timing import images_per_second

SIZES = (64, 128, 224)
BATCH = 256
TIMED_RUNS = 5
TRAIN_GALAXIES = 32


def build_bundle(out: Path, size: int, seed: int) -> Path:
    """Throw-away default-architecture models at ``size`` px and their bundle with a float16 copy."""
    from catalogs.synthetic import synthesize_survey
    from export.builder.exporter import export_bundle
    from models.pipeline import train_models

    bundle = out / f"bundle-{size}"
    if (bundle / "bundle.json").is_file():
        return bundle
    catalog = synthesize_survey(out=out / "train-survey", n=TRAIN_GALAXIES, seed=seed + 1, mix="balanced")
    train_models(catalogs=[catalog], out=out / f"models-{size}",
                 models=["classifier", "regressor", "captioner"], epochs=1, image_size=size, seed=seed)
    export_bundle(out / f"models-{size}", bundle, fp16=True)
    return bundle


def image_graph(bundle: Path, batch: int, device: str) -> dict:
    """fp32 and float16 images/s of the merged image graph on ``device``, and their agreement."""
    from export.serve.bundle import IMAGE_INPUT, MERGED_NAME, read_manifest
    from export.serve.providers import choose_providers
    from export.serve.runtime import create_session

    manifest = read_manifest(bundle)
    providers = choose_providers(device)
    sessions = {p: create_session(bundle / f, providers) for p, f in
                (("fp32", f"{MERGED_NAME}.onnx"), ("fp16", manifest["fp16"]["file"]))}
    size = manifest["image"]["size"]
    x = np.random.default_rng(0).random((batch, size, size, 3), np.float32)
    row = {"size": size, "batch": batch, "provider": sessions["fp32"].get_providers()[0]}
    for precision, session in sessions.items():
        row[f"{precision}_ips"] = round(images_per_second(lambda s=session: s.run(None, {IMAGE_INPUT: x}), len(x),
                                                          TIMED_RUNS), 1)
    probs = [s.run(["probs"], {IMAGE_INPUT: x})[0].argmax(1) for s in sessions.values()]
    row["fp16_speedup"] = round(row["fp16_ips"] / row["fp32_ips"], 2)
    row["fp16_class_agreement_here"] = float(np.mean(probs[0] == probs[1]))
    row["fp16_gate_at_export"] = manifest["fp16"]["gate"]["passed"]
    return row


def end_to_end(out: Path, bundle: Path, n: int, device: str, seed: int) -> dict:
    """Annotation images/s over ``n`` JPEGs (``annotate_catalog``, what ``morphcat annotate`` runs), decode alone
    and inference alone."""
    from catalogs.contract import read_catalog
    from catalogs.decoding import BATCH_SIZE, iter_model_inputs
    from catalogs.synthetic import synthesize_survey
    from export.serve.catalog import annotate_catalog
    from export.serve.runtime import open_bundle

    survey = out / "survey"
    if not (survey / "catalog.parquet").is_file():
        synthesize_survey(out=survey, n=n, seed=seed, mix="balanced")
    catalog = read_catalog(survey / "catalog.parquet")
    paths = catalog.table.column("image_path").to_pylist()
    loaded = open_bundle(bundle, device=device)
    workers = os.cpu_count() or 1
    t = time.perf_counter()
    pixels = np.concatenate([b.pixels for b in iter_model_inputs(catalog.root, paths, loaded.image,
                                                                  batch_size=BATCH_SIZE, workers=workers)])
    decode_ips = len(paths) / (time.perf_counter() - t)
    loaded.infer(pixels[:BATCH_SIZE])  # warm-up
    t = time.perf_counter()
    for i in range(0, len(pixels), BATCH_SIZE):
        outputs = loaded.infer(pixels[i:i + BATCH_SIZE])
        if loaded.caption_source == "learned":
            loaded.captions_from_state(outputs["h0"], outputs["c0"])
    infer_ips = len(pixels) / (time.perf_counter() - t)
    # The factor is computed from the figures as written, so gpu.json agrees with itself.
    decode_ips, infer_ips = round(decode_ips, 1), round(infer_ips, 1)
    summaries = [annotate_catalog(catalog=survey / "catalog.parquet", bundle=bundle, out=out / "runs" / f"run{k}",
                                  device=device) for k in range(2)]  # the first warms the process up
    summary = summaries[-1]
    limit, by = ("decode", infer_ips / decode_ips) if decode_ips < infer_ips else ("inference", decode_ips / infer_ips)
    return {"n": len(paths), "annotate_ips": summary["images_per_second"], "decode_ips": decode_ips,
            "inference_ips": infer_ips, "precision": summary["precision"],
            "precision_reason": summary["precision_reason"], "provider": summary["provider"],
            "decode_workers": workers, "limit": limit, "limit_factor": round(by, 2)}


def run_gpu_bench(out: Path, sizes=SIZES, batch: int = BATCH, n: int = 2000, device: str = "auto",
                  seed: int = 0, log=print) -> dict:
    from export.serve.providers import choose_providers, cuda_unavailable_reason

    choose_providers(device)  # device="cuda" where CUDA cannot run: refused here, with the reason
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    no_cuda = cuda_unavailable_reason()
    if no_cuda is not None and device == "auto":
        log(f"no CUDA here ({no_cuda}): measuring on the CPU instead")
    device = "cpu" if no_cuda is not None else device
    rows = []
    for size in sizes:
        log(f"{size} px: models, bundle, image graph at batch {batch}…")
        rows.append(image_graph(build_bundle(out, size, seed), batch, device))
    log(f"end to end over {n} JPEGs at {sizes[0]} px…")
    e2e = end_to_end(out, build_bundle(out, sizes[0], seed), n, device, seed)
    summary = {"machine": machine(), "device": device, "cuda_unavailable": no_cuda, "image_graph": rows,
               "end_to_end": e2e, "seconds": round(time.perf_counter() - t0, 1)}
    return write_summary(out, "gpu", summary, gpu_markdown(summary))


def gpu_markdown(s: dict) -> str:
    e = s["end_to_end"]
    where = s["image_graph"][0]["provider"] if s["image_graph"] else s["device"]
    lines = [f"Machine: {machine_line(s['machine'])}; image graph on {where}"
             + (f" (no CUDA: {s['cuda_unavailable']})" if s["cuda_unavailable"] else "") + ".", "",
             "| input | batch | fp32 images/s | float16 images/s | float16 ÷ fp32 | float16 classes = fp32 here |",
             "|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['size']} px | {r['batch']} | {r['fp32_ips']:.1f} | {r['fp16_ips']:.1f} | ×{r['fp16_speedup']:.2f} | "
              f"{r['fp16_class_agreement_here']:.1%} |" for r in s["image_graph"]]
    lines += ["", f"End to end ({e['n']} synthetic 424 px JPEGs, {e['precision']}: {e['precision_reason']}): "
              f"catalog-annotate {e['annotate_ips']:.1f} images/s; decode alone {e['decode_ips']:.1f} images/s on "
              f"{e['decode_workers']} threads; inference alone {e['inference_ips']:.1f} images/s on {e['provider']}. "
              f"The limit is {e['limit']}: the other stage is ×{e['limit_factor']:.2f} as fast.",
              "", f"Whole benchmark: {s['seconds']:.0f} s."]
    return "\n".join(lines) + "\n"
