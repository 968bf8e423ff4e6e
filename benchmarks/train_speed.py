"""``morphcat bench train-speed``: training images/s of ablation variants, A/B on one machine.

Each repeat trains every entry in turn (alternating, so a change of load on a shared machine hits
them alike) on the same catalogs for a few epochs, and reads the images/s the training records in
its sidecar: training images seen per second of the whole fit, validation passes included. An
entry is an ablation variant (``benchmarks/ablation.py``), optionally at a fixed precision,
``NAME@float32``: ``plain-hard-union@float32`` is the default this project had before its
training was made faster. Figures compare only within one run, so the result carries the CPU and
its flags. Beside the whole fit, the epochs after the first are timed alone ("steady"): the first
carries the graph tracing, a fixed cost that a short benchmark would otherwise count many times
more than a 24-epoch training does.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import replace
from pathlib import Path

from catalogs.atomic import write_text
from models.config import BackboneConfig, ModelConfig, TrainSettings
from models.precision import PRECISIONS
from models.provenance import code_commit

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


def _epoch_clock():
    """A Keras callback keeping the wall and CPU clocks at the start of training and at the end
    of every epoch."""
    import time

    import keras

    class EpochClock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.marks: list[tuple[float, float]] = []

        def on_train_begin(self, logs=None):
            self.marks = [(time.perf_counter(), time.process_time())]

        def on_epoch_end(self, epoch, logs=None):
            self.marks.append((time.perf_counter(), time.process_time()))
    return EpochClock()


def steady_rates(marks: list[tuple[float, float]], images_per_epoch: float) -> dict:
    """Images/s and images per CPU-second over the epochs after the first (None with one epoch)."""
    if len(marks) < 3:
        return {"steady_images_per_second": None, "steady_images_per_cpu_second": None}
    (wall0, cpu0), (wall1, cpu1) = marks[1], marks[-1]
    images = images_per_epoch * (len(marks) - 2)
    return {"steady_images_per_second": round(images / (wall1 - wall0), 1),
            "steady_images_per_cpu_second": round(images / (cpu1 - cpu0), 1)}


def measure(catalogs: list[Path], entries: list[str], epochs: int, repeats: int, progress=print) -> dict:
    """Train every entry ``repeats`` times, alternating; images/s and precision of each run."""
    from benchmarks.run import machine
    from models.pipeline import read_catalogs
    from models.train import train_morphology

    recipes = {e: entry_recipe(e, epochs) for e in entries}  # every entry checked before any training
    loaded, names = read_catalogs(catalogs)
    runs: dict[str, list[dict]] = {e: [] for e in entries}
    for repeat in range(repeats):
        for entry in entries:
            config, settings = recipes[entry]
            clock = _epoch_clock()
            trained = train_morphology(loaded, names, config, settings, heads=["classifier", "regressor"],
                                       callbacks=[clock])
            sidecar = trained[0].sidecar
            per_epoch = sidecar["train_images_per_second"] * sidecar["train_seconds"] / sidecar["epochs_run"]
            run = {"images_per_second": sidecar["train_images_per_second"],
                   "images_per_cpu_second": sidecar["train_images_per_cpu_second"],
                   **steady_rates(clock.marks, round(per_epoch)),
                   "precision": sidecar["precision"], "seconds": sidecar["train_seconds"]}
            runs[entry].append(run)
            progress(f"repeat {repeat + 1}/{repeats} {entry}: {run['images_per_second']} images/s, "
                     f"{run['images_per_cpu_second']} per CPU-second; after the first epoch "
                     f"{run['steady_images_per_second']} and {run['steady_images_per_cpu_second']} "
                     f"({run['precision']})")
    return {"machine": machine(), "commit": code_commit(), "catalogs": [str(c) for c in catalogs], "epochs": epochs,
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

    keys = [("images_per_second", "images/s, whole fit"), ("images_per_cpu_second", "per CPU-second"),
            ("steady_images_per_second", "images/s after the first epoch"),
            ("steady_images_per_cpu_second", "per CPU-second after the first epoch")]
    keys = [(k, label) for k, label in keys if all(r.get(k) is not None for e in entries for r in result["runs"][e])]
    lines = [f"Training (joint classifier + regressor, {result['epochs']} epochs, validation included), "
             f"{result['repeats']} alternating repeats on {machine_line(result['machine'])}; commit "
             f"{result['commit'][:12]}. Each cell: the repeats, their median, × {first}.", "",
             "| entry | what | precision | " + " | ".join(label for _, label in keys) + " |",
             "|---|---|---|" + "---|" * len(keys)]
    for e in entries:
        runs = result["runs"][e]
        cells = []
        for key, _ in keys:
            ratio = median(e, key) / median(first, key) if median(first, key) else float("nan")
            cells.append(f"{', '.join(f'{r[key]:.1f}' for r in runs)}: {median(e, key):.1f}, ×{ratio:.2f}")
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
