"""``morphcat bench train-speed``: training images/s of ablation variants, A/B on one machine.

Each repeat trains every entry in turn (alternating, so a change of load on a shared machine hits
them alike) on the same catalogs for a few epochs, and reads the images/s the training records in
its sidecar: training images seen per second of the whole fit, validation passes included. An
entry is an ablation variant (``benchmarks/ablation.py``), optionally at a fixed precision,
``NAME@float32``: ``plain-hard-union@float32`` is the default this project had before its
training was made faster. Figures compare only within one run, so the result carries the CPU and
its flags.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import replace
from pathlib import Path

from catalogs.atomic import write_text
from models.config import BackboneConfig, ModelConfig, TrainSettings
from models.precision import PRECISIONS

# The default when the throughput work started: one softmax, a plain CNN, hard targets, float32.
BEFORE = "plain-hard-union@float32"


def parse_entry(entry: str) -> tuple[str, str | None]:
    """``"NAME"`` or ``"NAME@PRECISION"`` → (variant, precision or None for the variant's own)."""
    from benchmarks.ablation import VARIANTS

    name, _, precision = entry.partition("@")
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r} in {entry!r}: one of {sorted(VARIANTS)}")
    if precision and precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r} in {entry!r}: one of {PRECISIONS}")
    return name, precision or None


def entry_recipe(entry: str, epochs: int, seed: int = 0) -> tuple[ModelConfig, TrainSettings]:
    from benchmarks.ablation import VARIANTS, variant_config

    name, precision = parse_entry(entry)
    config, settings = variant_config(VARIANTS[name], ModelConfig(backbone=BackboneConfig()),
                                      TrainSettings(epochs=epochs, seed=seed))
    return config, settings if precision is None else replace(settings, precision=precision)


def measure(catalogs: list[Path], entries: list[str], epochs: int, repeats: int, progress=print) -> dict:
    """Train every entry ``repeats`` times, alternating; images/s and precision of each run."""
    from benchmarks.ablation import _commit
    from benchmarks.run import machine
    from models.pipeline import read_catalogs
    from models.train import train_morphology

    recipes = {e: entry_recipe(e, epochs) for e in entries}  # every entry checked before any training
    loaded, names = read_catalogs(catalogs)
    runs: dict[str, list[dict]] = {e: [] for e in entries}
    for repeat in range(repeats):
        for entry in entries:
            config, settings = recipes[entry]
            trained = train_morphology(loaded, names, config, settings, heads=["classifier", "regressor"])
            sidecar = trained[0].sidecar
            runs[entry].append({"images_per_second": sidecar["train_images_per_second"],
                                "images_per_cpu_second": sidecar["train_images_per_cpu_second"],
                                "precision": sidecar["precision"], "seconds": sidecar["train_seconds"]})
            progress(f"repeat {repeat + 1}/{repeats} {entry}: {sidecar['train_images_per_second']} images/s, "
                     f"{sidecar['train_images_per_cpu_second']} per CPU-second ({sidecar['precision']})")
    return {"machine": machine(), "commit": _commit(), "catalogs": [str(c) for c in catalogs], "epochs": epochs,
            "repeats": repeats, "runs": runs}


def render(result: dict) -> str:
    """The table: per entry its images/s (wall) and images per CPU-second of each repeat, their
    medians and their ratios to the first entry. On an idle machine the wall figure is what a
    user waits for; on a shared one only the CPU-second figure still measures the entry itself."""
    from benchmarks.ablation import VARIANTS
    from benchmarks.run import machine_line

    entries = list(result["runs"])
    first = entries[0]

    def median(e: str, key: str) -> float:
        return statistics.median(r[key] for r in result["runs"][e])

    lines = [f"Training (joint classifier + regressor, {result['epochs']} epochs, validation included), "
             f"{result['repeats']} alternating repeats on {machine_line(result['machine'])}; commit "
             f"{result['commit'][:12]}.", "",
             f"| entry | what | precision | images/s per repeat | median | × {first} | images per CPU-second "
             f"| median | × {first} |", "|---|---|---|---|---:|---:|---|---:|---:|"]
    for e in entries:
        runs = result["runs"][e]
        cells = []
        for key in ("images_per_second", "images_per_cpu_second"):
            ratio = median(e, key) / median(first, key) if median(first, key) else float("nan")
            cells += [", ".join(f"{r[key]:.1f}" for r in runs), f"{median(e, key):.1f}", f"{ratio:.2f}"]
        lines.append(f"| {e} | {VARIANTS[parse_entry(e)[0]].what} | {runs[0]['precision']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_train_speed(catalogs: list[Path], out: Path, entries: list[str], epochs: int, repeats: int,
                    progress=print) -> dict[str, Path]:
    result = measure(catalogs, entries, epochs, repeats, progress)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "train-speed.json", "md": out / "train-speed.md"}
    write_text(paths["json"], json.dumps(result, indent=2))
    write_text(paths["md"], render(result))
    return paths
