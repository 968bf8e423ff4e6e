"""Every benchmark of ``morphcat bench NAME``: its name, its group, its arguments, whether it needs
TensorFlow, and its run (which prints what it wrote). The command line is built from this table
and nothing else, so a new benchmark is one entry here.

Importing this module imports no benchmark: each run imports its own module when it starts, so
``morphcat bench --list`` and the commands that need no TensorFlow stay light.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from catalogs.arguments import names, positive_int, whole_numbers
from catalogs.decoding import BATCH_SIZE
from catalogs.errors import UsageError
from catalogs.inputs import CUTOUT_SIZE
from catalogs.shards import SHARD_SIZE
from models.config import TrainSettings

SCALE = "throughput and scale"
SCIENCE = "science studies"
GROUPS = (SCALE, SCIENCE)


@dataclass(frozen=True)
class Argument:
    """One command-line argument, as ``argparse.ArgumentParser.add_argument`` takes it."""

    flags: tuple[str, ...]
    options: dict


def arg(*flags: str, **options) -> Argument:
    return Argument(flags, options)


@dataclass(frozen=True)
class Benchmark:
    name: str
    group: str
    help: str
    arguments: tuple[Argument, ...]
    tensorflow: bool  # its run trains, evaluates or exports Keras models
    run: Callable[[argparse.Namespace], None]

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        for a in self.arguments:
            parser.add_argument(*a.flags, **a.options)


BENCHMARKS: dict[str, Benchmark] = {}


def benchmark(name: str, group: str, help: str, *arguments: Argument, tensorflow: bool):
    """Register the decorated function as the run of benchmark ``name``."""
    if group not in GROUPS:
        raise ValueError(f"benchmark {name}: group must be one of {GROUPS}, got {group!r}")

    def register(run: Callable[[argparse.Namespace], None]) -> Callable[[argparse.Namespace], None]:
        if name in BENCHMARKS:
            raise ValueError(f"benchmark {name} is declared twice")
        BENCHMARKS[name] = Benchmark(name, group, help, arguments, tensorflow, run)
        return run

    return register


def listing() -> str:
    """The benchmarks by group, one line each: what ``morphcat bench --list`` prints."""
    width = max(len(n) for n in BENCHMARKS)
    lines = []
    for group in GROUPS:
        lines.append(f"{group}:")
        lines += [f"  {b.name:<{width}}  {b.help}" for b in BENCHMARKS.values() if b.group == group]
    return "\n".join(lines)


def _out(help: str) -> Argument:
    return arg("--out", type=Path, required=True, help=help)


def _bundle() -> Argument:
    return arg("--bundle", type=Path, required=True, help="model bundle folder (morphcat export --out)")


# -- throughput and scale -----------------------------------------------------------------------


@benchmark("throughput", SCALE, "annotate throughput against the Keras path and the machine's limits",
           arg("--n", type=int, default=1000, help="synthetic 424 px galaxies to annotate (default 1000)"),
           _out("folder for the inputs, runs and results.json/md/png"),
           arg("--models", type=Path, default=None, metavar="MODELS_DIR",
               help="trained models to measure (default: default-architecture models trained for one epoch)"),
           arg("--repeats", type=int, default=3, help="timed runs per path, after a warm-up (default 3)"),
           arg("--batch-size", type=int, default=BATCH_SIZE),
           arg("--seed-images", type=int, default=5, help="images the seed project's captioning runs on"),
           tensorflow=True)
def _throughput(args: argparse.Namespace) -> None:
    from benchmarks.report import write_results
    from benchmarks.run import BenchSettings, run_benchmark

    settings = BenchSettings(n=args.n, repeats=args.repeats, batch_size=args.batch_size,
                             seed_images=args.seed_images, models_dir=args.models)
    paths = write_results(run_benchmark(args.out, settings), args.out)
    print(paths["md"].read_text())
    print(f"results: {paths['json']}, {paths['md']}, {paths['png']}")


@benchmark("load", SCALE, "annotate a large catalog (images reused) and record its memory over time",
           _bundle(),
           _out("folder for the inputs, the run and load.json/md/png"),
           arg("--rows", type=int, default=100_000, help="catalog rows (default 100000)"),
           arg("--images", type=int, default=1000, help="distinct synthetic images they point at (default 1000)"),
           arg("--size", type=int, default=CUTOUT_SIZE, help=f"cutout size in pixels (default {CUTOUT_SIZE}, as GZ2)"),
           arg("--shard-size", type=int, default=SHARD_SIZE),
           arg("--batch-size", type=int, default=BATCH_SIZE),
           tensorflow=False)
def _load(args: argparse.Namespace) -> None:
    from benchmarks.load import run_load, write_load_results

    result = run_load(args.out, args.bundle, args.rows, args.images, size=args.size, shard_size=args.shard_size,
                      batch_size=args.batch_size)
    paths = write_load_results(result, args.out)
    print(paths["md"].read_text())
    print(f"results: {paths['json']}, {paths['md']}, {paths['png']}")


@benchmark("shard", SCALE, "a shard worker's memory and start-up on small and huge catalogs",
           _bundle(),
           _out("folder for the catalogs, the runs and shards.json/md"),
           arg("--rows", default="10000,1000000", help="catalog sizes, comma-separated (default 10000,1000000)"),
           arg("--images", type=int, default=1000, help="distinct synthetic images the rows point at"),
           arg("--shard-size", type=int, default=SHARD_SIZE),
           tensorflow=False)
def _shard(args: argparse.Namespace) -> None:
    from benchmarks.shards import run_shard_bench

    run_shard_bench(args.out, args.bundle, whole_numbers(args.rows), images=args.images, shard_size=args.shard_size)
    print((args.out / "shards.md").read_text())


@benchmark("similar", SCALE, "index build time, query latency and HNSW recall of morphcat similar",
           _out("folder for similar.json/md"),
           arg("--rows", default="100000,1000000", help="index sizes, comma-separated (default 100000,1000000)"),
           arg("--queries", type=positive_int, default=200, help="single-vector queries timed per index"),
           tensorflow=False)
def _similar(args: argparse.Namespace) -> None:
    from benchmarks.similar import run_similar_bench

    run_similar_bench(args.out, whole_numbers(args.rows), queries=args.queries)
    print((args.out / "similar.md").read_text())


@benchmark("decode", SCALE, "JPEG decode at reduced scale against a full decode: images/s and how much the "
           "model inputs change",
           arg("folders", type=Path, nargs="+", metavar="FOLDER", help="folders of JPEG cutouts"),
           _out("folder for decode.json/md"),
           arg("--n", type=positive_int, default=300, help="files per folder (default 300)"),
           arg("--image-size", type=positive_int, default=None, metavar="PX",
               help="model input size (default: ImageSpec's)"),
           tensorflow=False)
def _decode(args: argparse.Namespace) -> None:
    from benchmarks.decode import run_decode_bench

    run_decode_bench(args.out, args.folders, n=args.n, size=args.image_size)
    print((args.out / "decode.md").read_text())


@benchmark("gpu", SCALE, "the image graph on the GPU at several input sizes, fp32 and float16, and annotate end "
           "to end against decode (what benchmarks/gpu.sh runs)",
           _out("folder for the models, bundles, runs and gpu.json/md"),
           arg("--sizes", default="64,128,224", help="model input sizes in px, comma-separated"),
           arg("--batch", type=positive_int, default=256, help="images per image-graph call (default 256)"),
           arg("--n", type=positive_int, default=2000, help="synthetic JPEGs annotated end to end"),
           arg("--device", choices=["auto", "cpu", "cuda"], default="auto",
               help="auto = CUDA when it can run here, else the CPU"),
           tensorflow=True)
def _gpu(args: argparse.Namespace) -> None:
    from benchmarks.gpu import run_gpu_bench

    run_gpu_bench(args.out, sizes=whole_numbers(args.sizes), batch=args.batch, n=args.n, device=args.device)
    print((args.out / "gpu.md").read_text())


# -- science studies ----------------------------------------------------------------------------


@benchmark("labels", SCIENCE, "how far the labels limit the accuracy (label support, the rule on raw votes) and a "
           "classical-morphology baseline, alone and stacked with evaluate --cv's predictions",
           arg("catalogs", type=Path, nargs="+", metavar="CATALOG", help="catalogs (morphcat ingest)"),
           _out("folder for labels.json/md"),
           arg("--hart", type=Path, default=None, metavar="CSV", help="the Hart16-layout CSV a GZ2 catalog was "
               "ingested from: the rule on its raw (weighted) vote fractions"),
           arg("--cv-predictions", type=Path, default=None, metavar="PARQUET",
               help="evaluate --cv's predictions.parquet: the CNN alone and stacked with the morphology"),
           arg("--folds", type=positive_int, default=5, help="K of the cross-validation (as evaluate --cv)"),
           arg("--n", type=positive_int, default=None, help="only each catalog's first N rows"),
           tensorflow=True)
def _labels(args: argparse.Namespace) -> None:
    from benchmarks.labels import run_labels_bench

    run_labels_bench(args.catalogs, args.out, hart=args.hart, cv_predictions=args.cv_predictions, folds=args.folds,
                     n=args.n)
    print((args.out / "labels.md").read_text())


@benchmark("unusual", SCIENCE, "do rare galaxies the models never saw top morphcat unusual's ranking?",
           _out("folder for the surveys, the models, the run and unusual.json/md"),
           arg("--n", type=positive_int, default=2000, help="galaxies in the ranked survey (GZ2 mix)"),
           arg("--train-n", type=positive_int, default=1500, help="galaxies in the training survey, before its "
               "rare ones are removed"),
           arg("--epochs", type=positive_int, default=20),
           arg("--seed", type=int, default=0),
           tensorflow=True)
def _unusual(args: argparse.Namespace) -> None:
    from benchmarks.unusual import run_unusual_bench

    run_unusual_bench(args.out, n=args.n, train_n=args.train_n, epochs=args.epochs, seed=args.seed)
    print((args.out / "unusual.md").read_text())


@benchmark("active", SCIENCE, "simulate active learning on a labelled catalog: each selection strategy against "
           "random, accuracy per round (hours on 2 cores)",
           arg("catalog", type=Path, help="a labelled catalog (morphcat ingest); its labels play the volunteers"),
           _out("folder for active.json/md/png"),
           arg("--strategies", default="random,entropy,margin,bald,diverse"),
           arg("--start", type=positive_int, default=100, help="random labels to start from"),
           arg("--step", type=positive_int, default=100, help="labels added per round"),
           arg("--rounds", type=positive_int, default=4),
           arg("--epochs", type=positive_int, default=None, help="per training (default: morphcat train's)"),
           arg("--seed", type=int, default=0),
           arg("--init-from", type=Path, default=None, metavar="MODELS_DIR",
               help="start every round from this classifier's backbone (e.g. trained on morphcat synth)"),
           arg("--head-only", action="store_true",
               help="freeze the --init-from backbone and refit only a linear head each round: minutes, so every "
                    "fold is the test set in turn, --repeats random starts each"),
           arg("--repeats", type=positive_int, default=3, help="random starts per fold (--head-only)"),
           tensorflow=True)
def _active(args: argparse.Namespace) -> None:
    if args.head_only:
        from benchmarks.active_probe import run_probe_bench

        if args.init_from is None:
            raise UsageError("--head-only needs --init-from: the pretrained classifier whose backbone is frozen")
        run_probe_bench(args.catalog, args.out, args.init_from, strategies=names(args.strategies), start=args.start,
                        step=args.step, rounds=args.rounds, repeats=args.repeats, seed=args.seed)
    else:
        from benchmarks.active import run_active_bench

        run_active_bench(args.catalog, args.out, strategies=names(args.strategies), start=args.start,
                         step=args.step, rounds=args.rounds, epochs=args.epochs, seed=args.seed,
                         init_from=args.init_from)
    print((args.out / "active.md").read_text())


@benchmark("ood", SCIENCE, "measure how ood_flag separates galaxies from photos, empty sky and patterns",
           _bundle(),
           _out("folder for the images, the run and ood.json/md"),
           arg("--catalog", type=Path, default=None, help="also annotate these galaxies (e.g. real ones)"),
           arg("--synthetic", type=int, default=200, help="synthetic-survey galaxies to include (default 200)"),
           arg("--seed", type=int, default=0),
           tensorflow=False)
def _ood(args: argparse.Namespace) -> None:
    from benchmarks.ood import ood_markdown, run_ood_bench
    from catalogs.atomic import write_text

    result = run_ood_bench(args.out, args.bundle, args.catalog, synthetic=args.synthetic, seed=args.seed)
    text = ood_markdown(result)
    write_text(args.out / "ood.md", text)  # whole or not at all
    print(text)
    print(f"results: {args.out / 'ood.json'}, {args.out / 'ood.md'}")


@benchmark("train-speed", SCALE, "training images/s of ablation variants, alternating on one machine",
           arg("catalogs", type=Path, nargs="+", metavar="CATALOG", help="catalogs to train on"),
           _out("folder for train-speed.json/md"),
           arg("--variants", default="plain-hard-union@float32,default",
               help="comma-separated ablation variants, each optionally NAME@PRECISION (default: the default "
                    "before the throughput work, plain-hard-union@float32, against today's)"),
           arg("--epochs", type=positive_int, default=3, help="epochs per training (default 3)"),
           arg("--repeats", type=positive_int, default=2, help="trainings per variant, alternating (default 2)"),
           tensorflow=True)
def _train_speed(args: argparse.Namespace) -> None:
    from benchmarks.train_speed import parse_entry, run_train_speed

    entries = names(args.variants)
    try:
        for e in entries:
            parse_entry(e)
    except ValueError as e:
        raise UsageError(str(e)) from None
    paths = run_train_speed(args.catalogs, args.out, entries, args.epochs, args.repeats,
                            progress=lambda line: print(line, flush=True))
    print(paths["md"].read_text())
    print(f"results: {paths['json']}, {paths['md']}")


# The ablation's options, one per line, so that a new one is one more line.
ABLATION_ARGUMENTS = (
    arg("catalogs", type=Path, nargs="+", metavar="CATALOG", help="catalogs to cross-validate on"),
    _out("folder for each variant's results and ablation.json/md"),
    arg("--variants", default=None, help="comma-separated subset (default: all; see benchmarks/ablation.py)"),
    arg("--ledger", type=Path, default=None,
        help="JSON-lines file each finished (variant, fold) is appended to and finished ones are skipped from "
             "(default: OUT/ledger.jsonl; the project's is benchmarks/results/ablation.jsonl)"),
    arg("--folds", type=int, default=3),
    arg("--epochs", type=int, default=TrainSettings.epochs, help="maximum epochs per fold"),
    arg("--seed", type=int, default=TrainSettings.seed,
        help="training seed, part of the protocol: another seed's cells form their own table (the seed-to-seed "
             "spread of a variant is the ledger's noise)"),
    arg("--models", default="classifier,regressor", help="models each fold trains"),
    arg("--throughput-images", type=int, default=300,
        help="synthetic 424 px cutouts each variant's bundle annotates to time it (0: skip)"),
    arg("--unlabelled", type=Path, action="append", default=[], metavar="CATALOG",
        help="a catalog without labels, for the variants that train on them (pseudo-labels); repeatable"),
)


@benchmark("ablation", SCIENCE, "cross-validate modelling variants and time them (hours on 2 cores)",
           *ABLATION_ARGUMENTS, tensorflow=True)
def _ablation(args: argparse.Namespace) -> None:
    from benchmarks.ablation import VARIANTS, run_ablation

    variants = names(args.variants) if args.variants else list(VARIANTS)
    run_ablation(args.catalogs, args.out, variants, ledger=args.ledger, k=args.folds, epochs=args.epochs,
                 seed=args.seed, kinds=tuple(names(args.models)), throughput_images=args.throughput_images,
                 progress=lambda line: print(f"cross-validating {line}", flush=True), unlabelled=args.unlabelled)
    print((args.out / "ablation.md").read_text())
