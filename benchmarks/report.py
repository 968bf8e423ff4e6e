"""Benchmark results as ``results.json``, a Markdown table (``results.md``, the README's) and a
bar chart (``results.png``)."""

from __future__ import annotations

import json
from pathlib import Path

from catalogs.atomic import atomic_path, write_text

THROUGHPUTS = (("morphcat", "morphcat_ips", "annotate_catalog end to end (decode, classifier + Grad-CAM, "
                                            "regressor, captions, CAM statistics, Parquet)"),
               ("Keras path", "keras_ips", "tf.data + compiled Keras models + GradientTape Grad-CAM + "
                                           "batched greedy captions"),
               ("decode only", "decode_ips", "morphcat's decoder alone, same threads"),
               ("onnxruntime only", "ort_ips", "the bundle's sessions on pre-decoded tensors"))


def write_summary(out: Path, stem: str, summary: dict, markdown: str) -> dict:
    """A benchmark's figures as ``OUT/<stem>.json`` and its table as ``OUT/<stem>.md``."""
    write_text(Path(out) / f"{stem}.json", json.dumps(summary, indent=2) + "\n")
    write_text(Path(out) / f"{stem}.md", markdown)
    return summary


def results_markdown(r: dict) -> str:
    m = r["machine"]
    lines = [f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; {m['platform']}; onnxruntime "
             f"{m['onnxruntime']} on {r['provider']}, {r['threads']} threads; N = {r['n']} synthetic 424×424 "
             f"JPEGs, batch {r['batch_size']}, median of {r['repeats']} runs after a warm-up.", "",
             "| path | images/s | what runs |", "|---|---:|---|"]
    lines += [f"| {name} | {r[key]:.1f} | {what} |" for name, key, what in THROUGHPUTS]
    lines += [f"| morphcat, 10·N rows | {r['rss_10n_images_per_second']:.1f} | the same flow on {10 * r['n']} rows in a "
              "fresh process: its fixed cost (flow runs, catalog check, opening the bundle) spread over more rows |",
              f"| decode + onnxruntime taking turns | {r['serial_limit_ips']:.1f} | 1 / (1/decode + 1/onnxruntime): the "
              f"limit when both stages share the same cores (morphcat reaches {r['efficiency_vs_serial_limit']:.0%}) |"]
    if "embedding_cost_fraction" in r:
        lines.append(f"| image graph without / with the embedding output | {r['image_graph_without_embedding_ips']:.1f} / "
                     f"{r['image_graph_ips']:.1f} | the embedding costs {r['embedding_cost_fraction']:.1%} of the image "
                     "graph's throughput (timed in alternation) |")
    lines += ["", "| captions | seconds per image |", "|---|---:|",
              f"| morphcat (encoder + batched greedy steps, onnxruntime) | {r['morphcat_caption_s_per_image']:.5f} |",
              f"| seed project (model reloaded per image, full sequence per token; {r['seed_images']} images) | "
              f"{r['seed_caption_s_per_image']:.3f} |",
              "", "| peak RSS, fresh process | MiB |", "|---|---:|",
              f"| annotating N = {r['n']} rows | {r['rss_n_mb']:.0f} |",
              f"| annotating 10·N = {10 * r['n']} rows | {r['rss_10n_mb']:.0f} |",
              "", "| target | measured | target | met |", "|---|---:|---:|---|"]
    if "peak_gflops" in r:
        roof = ["", f"Roofline: the image graph and captions are {r['model_gflop_per_image']:.3f} GFLOP per image; this "
                f"machine's measured fp32 peak is {r['peak_gflops']:.0f} GFLOP/s (GEMM {r['gemm_gflops']:.0f}, one large "
                f"convolution {r['conv_gflops']:.0f}; CPU flags {' '.join(m.get('cpu_flags', [])) or 'unknown'}).", "",
                "| | GFLOP/s | fraction |", "|---|---:|---:|",
                f"| onnxruntime only | {r['ort_gflops']:.0f} | {r['ort_fraction_of_peak']:.0%} of peak |",
                f"| morphcat end to end | {r['pipeline_gflops']:.0f} | {r['pipeline_fraction_of_peak']:.0%} of peak, "
                f"{r['pipeline_fraction_of_limit']:.0%} of the decode + onnxruntime limit |",
                f"| fixed cost of a run (1 image, warm process) | {r['fixed_seconds']:.2f} s | |",
                f"| opening the bundle (a fresh worker, once) | {r['bundle_open_seconds']:.2f} s | |",
                f"| reading and validating the catalog | {r['catalog_open_seconds']:.2f} s | |"]
        lines[-3:-3] = roof
    for t in r["targets"].values():
        sign = "≥" if t["higher_is_better"] else "≤"
        lines.append(f"| {t['what']} | {t['value']:.2f} | {sign} {t['target']:g} | {'yes' if t['met'] else '**no**'} |")
    return "\n".join(lines) + "\n"


def plot_results(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [name for name, _, _ in THROUGHPUTS]
    values = [r[key] for _, key, _ in THROUGHPUTS]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    bars = ax.barh(names[::-1], values[::-1], color=["#888", "#888", "#c44", "#36c"])
    ax.bar_label(bars, fmt="%.0f", padding=3)
    ax.set_xlabel("images / second")
    ax.set_title(f"annotate throughput, N = {r['n']}, {r['machine']['cores']} cores, {r['provider']}")
    ax.set_xlim(0, max(values) * 1.15)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


def write_results(r: dict, out: Path) -> dict[str, Path]:
    out = Path(out)
    paths = {"json": out / "results.json", "md": out / "results.md", "png": out / "results.png"}
    write_text(paths["json"], json.dumps(r, indent=2) + "\n")
    write_text(paths["md"], results_markdown(r))
    plot_results(r, paths["png"])
    return paths
