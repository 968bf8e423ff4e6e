"""The ``morphcat`` command: the user's entry point to every flow.

Each sub-command parses its arguments into concrete values and runs one Prefect flow; errors a
user can act on (``MorphcatError``) end as one clear message and exit status 2, not a traceback.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from contextlib import nullcontext
from pathlib import Path

from catalogs.arguments import names, positive_int
from catalogs.decoding import BATCH_SIZE
from catalogs.errors import MorphcatError, UsageError
from catalogs.hats import MARGIN_ARCSEC
from catalogs.inputs import CUTOUT_SIZE, ImageSpec
from catalogs.readers import FORMATS
from catalogs.shards import SHARD_SIZE
from export.serve.bundle import PRECISIONS
from export.serve.select import DEFAULT_N as SELECT_N
from export.serve.select import STRATEGIES
from export.serve.similar import DEFAULT_K
from export.serve.unusual import DEFAULT_N
from flows.common import Stopped, direct_run_settings, quiet_bad_input_tracebacks, stop_on_signals
from flows.temporary_server import api_url_configured, temporary_server
from models.config import TrainSettings
from models.progress import quiet_tensorflow

# Telemetry cannot reach its host from survey clusters (nor from here) and only logs errors.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

EXIT_BAD_INPUT = 2
DEPLOYMENT_COMMANDS = ("serve",)
SELF_STOPPING = ("app",)  # it stops its web server on SIGINT and SIGTERM itself
NO_FLOW_COMMANDS = ("similar", "unusual", "select", "app")  # queries and the web demo: no Prefect API
TRAIN_EXTRA = ("tensorflow", "keras", "tf2onnx", "onnx", "sacrebleu")  # pyproject's `train` extra


def _cmd_synth(args: argparse.Namespace) -> None:
    from flows.catalog_flows import synthesize_survey

    report = synthesize_survey(out=args.out, n=args.n, seed=args.seed, size=args.size, mix=args.mix,
                               workers=args.workers)
    report.print()


def _cmd_ingest(args: argparse.Namespace) -> None:
    from flows.catalog_flows import ingest_catalog

    options = {}
    if args.format in ("folder", "hats"):
        options = {"id_column": args.id_column, "path_column": args.path_column}
    if args.format == "hats":
        options["images"] = args.images
    report = ingest_catalog(src=args.src, fmt=args.format, out=args.out, options=options)
    report.print()


def _cmd_train(args: argparse.Namespace) -> None:
    from flows.model_flows import train_models

    kinds = names(args.models)
    for result in train_models(catalogs=args.catalogs, out=args.out, models=kinds, epochs=args.epochs,
                               image_size=args.image_size, seed=args.seed, init_from=args.init_from,
                               backbone_from=args.backbone_from, progress=True, unlabelled=args.unlabelled):
        print(f"{result['kind']}: {result['model']} ({result['epochs_run']} epochs, {result['train_seconds']} s, "
              f"{result['train_images_per_second']} training images/s, "
              f"{result['train_images_per_cpu_second']} per CPU-second)")


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from flows.model_flows import cross_validate, evaluate_models

    if args.cv is not None:
        if args.cv < 2:
            raise UsageError(f"--cv needs at least 2 folds, got {args.cv}")
        if args.members < 1:
            raise UsageError(f"--members needs at least 1 model, got {args.members}")
        cross_validate(catalogs=args.inputs, out=args.out, k=args.cv, models=names(args.models), epochs=args.epochs,
                       image_size=args.image_size, seed=args.seed, progress=True, unlabelled=args.unlabelled,
                       members=args.members)
        print((args.out / "cv.md").read_text())
        return
    if args.unlabelled:
        raise UsageError("--unlabelled trains on unlabelled catalogs: it goes with --cv (or train), not with scoring "
                         "trained models")
    if args.members != 1:
        raise UsageError("--members trains an ensemble in each fold: it goes with --cv, not with scoring trained "
                         "models")
    if len(args.inputs) != 2:
        raise UsageError("evaluate takes MODELS_DIR and one CATALOG (or --cv K and the catalogs to cross-validate)")
    evaluate_models(models_dir=args.inputs[0], catalog=args.inputs[1], out=args.out)
    print((args.out / "metrics.md").read_text())


def _cmd_export(args: argparse.Namespace) -> None:
    from export.builder.report import bundle_markdown
    from flows.export_flows import export_onnx

    manifest = export_onnx(models_dir=args.models_dir, out=args.out, catalog=args.catalog, int8=args.int8,
                           fp16=args.fp16)
    print(bundle_markdown(manifest, str(args.out)))


def _cmd_annotate(args: argparse.Namespace) -> None:
    from export.serve.catalog import parse_shards, summary_line
    from flows.annotate_flows import catalog_annotate

    summary = catalog_annotate(catalog=args.catalog, bundle=args.bundle, out=args.out, shard_size=args.shard_size,
                               batch_size=args.batch_size, runner=args.runner, workers=args.workers,
                               dask_address=args.dask_address, device=args.device, progress=True,
                               expect_image_size=args.image_size, precision=args.precision,
                               shards=None if args.shards is None else parse_shards(args.shards))
    print(in_flags(summary_line(summary), *_parsers("annotate")))  # the precision's reason may name export's flags


def _cmd_serve(args: argparse.Namespace) -> None:
    from flows.deployments import AnnotateSchedule, serve_deployments

    schedule = AnnotateSchedule.given(args.cron, args.catalog, args.bundle, args.out, args.timezone, args.workers)
    from prefect.settings import PREFECT_API_URL

    def serving(names: list[str]) -> None:
        print(f"morphcat serve: serving {', '.join(names)} to the Prefect server at {PREFECT_API_URL.value()} "
              "(Ctrl-C or SIGTERM stops); start a run with: prefect deployment run NAME -p …", flush=True)

    for line in serve_deployments(schedule, limit=args.limit, on_serving=serving).report():
        print(f"morphcat serve: {line}", file=sys.stderr)


def _cmd_hats(args: argparse.Namespace) -> None:
    from flows.catalog_flows import annotations_to_hats

    r = annotations_to_hats(annotations=args.annotations, out=args.out, run_id=args.run, name=args.name,
                            margin_arcsec=args.margin_arcsec, workers=args.workers, dask_address=args.dask_address)
    print(r.summary())


def _cmd_similar(args: argparse.Namespace) -> None:
    # A query, not a batch stage: no flow (a Prefect run would cost seconds around milliseconds).
    from catalogs.tables import print_table
    from export.serve.similar import similar

    run, table = similar(args.annotations, object_id=args.object_id, image=args.image, bundle=args.bundle,
                         k=args.k, run_id=args.run)
    # What the table is goes to stderr: piped, stdout is the table alone.
    print(f"{run.describe()}; most like {args.object_id or args.image}:", file=sys.stderr, flush=True)
    print_table(table)
    if args.output is not None:
        (table.write_csv if args.output.suffix == ".csv" else table.write_parquet)(args.output)
        print(f"written to {args.output}", file=sys.stderr)


def _cmd_unusual(args: argparse.Namespace) -> None:
    # Like similar: one computation over a finished run, no flow around it.
    from catalogs.tables import print_table
    from export.serve.unusual import write_unusual

    r = write_unusual(args.annotations, n=args.n, run_id=args.run, catalog=args.catalog)
    print(f"run {r.run_id}: {r.table.height} galaxies ranked → {r.parquet}; the first 10:", file=sys.stderr,
          flush=True)
    print_table(r.table.head(10).select("rank", "object_id", "score", "label_pred", "reason"))
    if r.sheet is not None:
        print(f"contact sheet of the top {min(args.n, r.table.height)}: {r.sheet}", file=sys.stderr)
    else:
        print(f"no contact sheet: {in_flags(r.no_sheet_reason, *_parsers('unusual'))}", file=sys.stderr)


def _cmd_select(args: argparse.Namespace) -> None:
    # Like similar: one computation over a finished run, no flow around it.
    from export.serve.select import select_subjects

    if args.out.suffix != ".csv":
        raise UsageError(f"--out is the Panoptes subject manifest, a .csv file: got {args.out}")
    chosen = select_subjects(args.annotations, n=args.n, strategy=args.strategy, run_id=args.run, bundle=args.bundle,
                             catalog=args.catalog, include_flagged=args.include_flagged,
                             include_labelled=args.include_labelled, seed=args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    chosen.subjects.write_csv(args.out)
    print(f"run {chosen.run_id}: {chosen.subjects.height} of {chosen.candidates} candidate galaxies chosen by "
          f"{args.strategy} → {args.out} (a Zooniverse subject manifest: the image column is 'image', "
          "'#' columns are hidden from volunteers)")


def _cron(text: str) -> str:
    from prefect.schedules import Cron

    try:
        Cron(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"a port is a number in 1…65535, not {text!r}")
    return int(text)


def _cmd_bench(args: argparse.Namespace) -> None:
    from benchmarks.registry import BENCHMARKS, listing

    if args.list or args.benchmark is None:
        print(listing())
        return
    BENCHMARKS[args.benchmark].run(args)


def _cmd_demo(args: argparse.Namespace) -> None:
    from flows.demo import run_demo

    run_demo(out=args.out, n=args.n, seed=args.seed, size=args.size, epochs=args.epochs)


def _cmd_app(args: argparse.Namespace) -> None:
    from flows.webapp.launch import check_inputs, run_server, streamlit_command

    note = check_inputs(args.bundle, args.annotations, args.catalog)
    if note:  # the catalog view still works, only without thumbnails
        print(f"morphcat app: no gallery thumbnails: {in_flags(note, *_parsers('app'))}", file=sys.stderr)
    command = streamlit_command(args.bundle, args.annotations, args.catalog, port=args.port, address=args.address)
    print(f"morphcat app: serving http://{args.address}:{args.port} (Ctrl-C stops)", flush=True)
    run_server(command)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="morphcat", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="render a synthetic GZ2-style survey and its catalog")
    p.add_argument("out", type=Path, help="output folder (images/, masks/, catalog.parquet)")
    p.add_argument("--n", type=int, default=200, help="number of galaxies (default 200)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=CUTOUT_SIZE, help=f"cutout size in pixels (default {CUTOUT_SIZE}, as GZ2)")
    p.add_argument("--mix", choices=["gz2", "balanced"], default="gz2",
                   help="class proportions: GZ2's, or the 5 classes equalised")
    p.add_argument("--workers", type=int, default=None,
                   help="rendering processes (default: all cores); the output does not depend on it")
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("ingest", help="turn a GZ2 / Kaggle / folder / FITS source into a catalog")
    p.add_argument("src", type=Path, help="source file or folder")
    p.add_argument("--format", required=True, choices=list(FORMATS))
    p.add_argument("--out", type=Path, required=True, help="catalog Parquet to write")
    p.add_argument("--id-column", default="object_id", help="manifest id column (folder, hats formats)")
    p.add_argument("--path-column", default="image_path", help="manifest image-path column (folder, hats formats)")
    p.add_argument("--images", type=Path, default=None,
                   help="hats format: the folder the image paths are relative to (default: the HATS catalog's folder)")
    p.set_defaults(func=_cmd_ingest)

    p = sub.add_parser("train", help="train the classifier, vote regressor and captioner on one or more catalogs")
    p.add_argument("catalogs", type=Path, nargs="+", metavar="CATALOG",
                   help="catalog Parquet files (from morphcat ingest or synth), trained on together")
    p.add_argument("--out", type=Path, required=True, help="models folder to write")
    p.add_argument("--models", default="classifier,regressor,captioner",
                   help="comma-separated subset of classifier,regressor,captioner")
    p.add_argument("--epochs", type=int, default=TrainSettings.epochs,
                   help=f"maximum epochs, early stopping on a held-out split (default {TrainSettings.epochs})")
    p.add_argument("--image-size", type=int, default=None,
                   help=f"model input size in pixels (default {ImageSpec.size}, or the --init-from models' size)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init-from", type=Path, default=None, metavar="MODELS_DIR",
                   help="start from the backbone of models trained before, e.g. on the synthetic survey")
    p.add_argument("--backbone-from", type=Path, default=None, metavar="MODELS_DIR",
                   help="with --models captioner: train the captioner on the frozen backbone of the classifier "
                        "trained in MODELS_DIR (default: end to end)")
    p.add_argument("--unlabelled", type=Path, action="append", default=[], metavar="CATALOG",
                   help="a catalog without labels: a teacher trained first labels it with its vote fractions and the "
                        "classifier and regressor learn from both (pseudo-labels, about twice the training); "
                        "repeatable")
    p.set_defaults(func=_cmd_train, tensorflow=True)

    p = sub.add_parser("evaluate", help="score trained models on a catalog (its test split if it trained them), "
                                        "or cross-validate training on catalogs (--cv K)",
                       usage="morphcat evaluate MODELS_DIR CATALOG --out REPORT\n"
                             "       morphcat evaluate --cv K CATALOG [CATALOG ...] --out REPORT [training options]")
    p.add_argument("inputs", type=Path, nargs="+", metavar="PATH",
                   help="MODELS_DIR then CATALOG; with --cv, the catalogs to cross-validate on")
    p.add_argument("--out", type=Path, required=True, help="report folder (metrics or cv .json/.md, plots)")
    p.add_argument("--cv", type=int, default=None, metavar="K",
                   help="stratified K-fold cross-validation: train from scratch K times, test every galaxy once")
    p.add_argument("--models", default="classifier,regressor,captioner", help="with --cv: the models to train")
    p.add_argument("--epochs", type=int, default=TrainSettings.epochs, help="with --cv: maximum epochs per fold")
    p.add_argument("--image-size", type=int, default=None, help=f"with --cv: input size (default {ImageSpec.size})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--unlabelled", type=Path, action="append", default=[], metavar="CATALOG",
                   help="with --cv: a catalog without labels each fold also learns from, pseudo-labelled by a teacher "
                        "trained on the fold (as train --unlabelled); repeatable")
    p.add_argument("--members", type=int, default=1, metavar="N",
                   help="with --cv: N classifiers and regressors per fold from seeds SEED, SEED+1, …, their "
                        "probabilities and vote fractions averaged (a deep ensemble, measured only: train and "
                        "annotate use one model; N times the training)")
    p.set_defaults(func=_cmd_evaluate, tensorflow=True)

    p = sub.add_parser("export", help="convert trained models to a parity-checked ONNX model bundle")
    p.add_argument("models_dir", type=Path, help="folder of trained models (morphcat train --out)")
    p.add_argument("--out", type=Path, required=True, help="bundle folder to write (.onnx files + bundle.json)")
    p.add_argument("--catalog", type=Path, default=None,
                   help="take the parity images from this catalog (its held-out test split when it trained the "
                        "models); default: synthetic-survey galaxies")
    p.add_argument("--int8", action="store_true",
                   help="also write int8 copies and report their size, speed and agreement against fp32")
    p.add_argument("--fp16", action="store_true",
                   help="also write the image graph's float16 copy (for GPUs), gated on its agreement with fp32")
    p.set_defaults(func=_cmd_export, tensorflow=True)

    p = sub.add_parser("annotate", help="annotate every object of a catalog with a model bundle, into Parquet")
    p.add_argument("catalog", type=Path, help="catalog Parquet (from morphcat ingest or synth)")
    p.add_argument("--bundle", type=Path, required=True, help="model bundle folder (morphcat export --out)")
    p.add_argument("--out", type=Path, required=True, help="output folder: predictions/ and errors/")
    p.add_argument("--shard-size", type=int, default=SHARD_SIZE,
                   help=f"catalog rows per shard, the unit of resume (default {SHARD_SIZE})")
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE, help=f"images per onnxruntime call (default {BATCH_SIZE})")
    p.add_argument("--runner", choices=["thread", "process", "dask"], default="thread",
                   help="where shards run: threads or processes here, or a Dask cluster")
    p.add_argument("--workers", type=int, default=1, help="shards at once (cores are shared out between them)")
    p.add_argument("--dask-address", default=None, help="scheduler address of a running Dask cluster")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="onnxruntime device: auto = CUDA when it can run here, else CPU")
    p.add_argument("--precision", choices=list(PRECISIONS), default="auto",
                   help="image graph precision: auto = int8 on a CPU, fp16 on CUDA, where the bundle's copy passed "
                        "its agreement gate at export and runs faster here, else fp32")
    p.add_argument("--image-size", type=int, default=None, metavar="PX",
                   help="refuse a bundle whose models take another input size (what this survey's models use)")
    p.add_argument("--shards", default=None, metavar="LIST",
                   help="run only these shards, e.g. 0-9,42 (a quick look, or redoing a range); the rest stay to do")
    p.set_defaults(func=_cmd_annotate)

    p = sub.add_parser("hats", help="write an annotation run's predictions as a HATS catalog (LSDB), with a margin cache")
    p.add_argument("annotations", type=Path, help="annotations folder (morphcat annotate --out)")
    p.add_argument("--out", type=Path, required=True, help="folder for the HATS catalog and its margin cache")
    p.add_argument("--run", default=None, help="run id (default: the folder's latest run)")
    p.add_argument("--name", default="morphcat", help="catalog name (default morphcat; the margin is NAME_margin)")
    p.add_argument("--margin-arcsec", type=float, default=MARGIN_ARCSEC,
                   help="margin cache radius: crossmatches up to this radius are complete at partition edges")
    p.add_argument("--workers", type=int, default=1, help="local Dask worker processes")
    p.add_argument("--dask-address", default=None, help="scheduler address of a running Dask cluster")
    p.set_defaults(func=_cmd_hats)

    p = sub.add_parser("similar", help="the galaxies of an annotation run most like one of them, or like an image")
    p.add_argument("annotations", type=Path, help="annotations folder (morphcat annotate --out)")
    query = p.add_mutually_exclusive_group(required=True)
    query.add_argument("--object-id", default=None, help="a galaxy of the run")
    query.add_argument("--image", type=Path, default=None, help="an image file (needs --bundle)")
    p.add_argument("--bundle", type=Path, default=None, help="the bundle that annotated the run (for --image)")
    p.add_argument("-k", type=positive_int, default=DEFAULT_K, help=f"neighbours to list (default {DEFAULT_K})")
    p.add_argument("--run", default=None, help="run id (default: the folder's latest run)")
    p.add_argument("--output", type=Path, default=None, help="also write the list (.csv, else Parquet)")
    p.set_defaults(func=_cmd_similar)

    p = sub.add_parser("unusual", help="rank an annotation run's galaxies by how unusual they are, with a contact sheet")
    p.add_argument("annotations", type=Path, help="annotations folder (morphcat annotate --out)")
    p.add_argument("-n", type=positive_int, default=DEFAULT_N, help=f"galaxies on the contact sheet (default {DEFAULT_N})")
    p.add_argument("--run", default=None, help="run id (default: the folder's latest run)")
    p.add_argument("--catalog", type=Path, default=None,
                   help="the annotated catalog, if it moved since (its images make the contact sheet)")
    p.set_defaults(func=_cmd_unusual)

    p = sub.add_parser("select", help="choose the galaxies volunteers should label next, as a Zooniverse subject manifest")
    p.add_argument("annotations", type=Path, help="annotations folder (morphcat annotate --out)")
    p.add_argument("--n", type=positive_int, default=SELECT_N, help=f"galaxies to choose (default {SELECT_N})")
    p.add_argument("--strategy", choices=STRATEGIES, default="entropy",
                   help="entropy, margin, bald (disagreement over the 8 views; needs --bundle), diverse "
                        "(spread over the embedding) or random")
    p.add_argument("--out", type=Path, required=True, help="the manifest to write (.csv)")
    p.add_argument("--bundle", type=Path, default=None, help="the bundle that annotated the run (for bald)")
    p.add_argument("--run", default=None, help="run id (default: the folder's latest run)")
    p.add_argument("--catalog", type=Path, default=None, help="the annotated catalog, if it moved since")
    p.add_argument("--include-flagged", action="store_true", help="also choose galaxies with ood_flag set")
    p.add_argument("--include-labelled", action="store_true", help="also choose galaxies the catalog labels")
    p.add_argument("--seed", type=int, default=0, help="for random and diverse")
    p.set_defaults(func=_cmd_select)

    p = sub.add_parser("serve", help="serve the flows' deployments to a Prefect server (runs until Ctrl-C)",
                       description="Registers catalog-annotate/on-demand, train-models/on-demand and "
                                   "export-onnx/on-demand (and catalog-annotate/scheduled with --cron) with the "
                                   "Prefect server at PREFECT_API_URL and runs their flow runs.")
    p.add_argument("--cron", type=_cron, default=None,
                   help="also serve catalog-annotate/scheduled on this cron schedule, e.g. '0 3 * * *'")
    p.add_argument("--timezone", default="UTC", help="time zone of --cron (default UTC)")
    p.add_argument("--catalog", type=Path, default=None, help="catalog Parquet the scheduled run annotates")
    p.add_argument("--bundle", type=Path, default=None, help="model bundle the scheduled run uses")
    p.add_argument("--out", type=Path, default=None, help="output folder of the scheduled run")
    p.add_argument("--workers", type=int, default=1, help="shards at once in the scheduled run")
    p.add_argument("--limit", type=int, default=None, help="most flow runs at once (default: no limit)")
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("demo", help="run the whole pipeline on the embedded synthetic survey")
    p.add_argument("--out", type=Path, default=Path("demo-output"))
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=CUTOUT_SIZE)
    p.add_argument("--epochs", type=int, default=TrainSettings.epochs, help="maximum training epochs")
    p.set_defaults(func=_cmd_demo, tensorflow=True)

    p = sub.add_parser("app", help="serve the web demo (Streamlit) for a bundle and, optionally, an annotations folder",
                       description="Single-image view (upload or pick from the catalog: class, vote fractions, "
                                   "caption, Grad-CAM overlay, out-of-distribution flag) and, with --annotations, "
                                   "a filterable catalog view. Runs on the ONNX bundle only.")
    p.add_argument("--bundle", type=Path, required=True, help="model bundle folder (morphcat export --out)")
    p.add_argument("--annotations", type=Path, default=None, help="annotations folder (morphcat annotate --out)")
    p.add_argument("--catalog", type=Path, default=None,
                   help="the annotated catalog's Parquet, when it moved since annotation (default: the path "
                        "recorded in the annotations folder)")
    p.add_argument("--port", type=_port, default=8501, help="port to listen on (default 8501)")
    p.add_argument("--address", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.set_defaults(func=_cmd_app)

    _add_bench(sub)
    return parser


def _add_bench(sub) -> None:
    """``morphcat bench NAME``: one sub-command per benchmark of ``benchmarks.registry``."""
    from benchmarks.registry import BENCHMARKS, listing

    p = sub.add_parser("bench", help="run a benchmark (throughput and scale, science studies): bench --list",
                       description="Run one benchmark: morphcat bench NAME --help for its options.",
                       epilog=listing(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--list", action="store_true", help="list the benchmarks by group")
    p.set_defaults(func=_cmd_bench)
    # No help per benchmark here: the epilog lists them by group, as --list does.
    benchmarks = p.add_subparsers(dest="benchmark", metavar="NAME", help="a benchmark below")
    for b in BENCHMARKS.values():
        q = benchmarks.add_parser(b.name, description=b.help)
        b.add_arguments(q)
        q.set_defaults(tensorflow=b.tensorflow)


# Library errors speak of parameters in backticks: `image_size` is one of the call this command
# made; `train_models(out=…)` one of another step, which a user runs as its command.
STEP_COMMANDS = {"train_models": "train", "export_bundle": "export", "annotate_catalog": "annotate"}


def _flags(parser: argparse.ArgumentParser) -> dict[str, str]:
    return {a.dest: a.option_strings[-1] for a in parser._actions if a.option_strings}


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def in_flags(message: str, parser: argparse.ArgumentParser, root: argparse.ArgumentParser | None = None) -> str:
    """``message`` with the parameters it names as the flags the user types: this command's
    (``parser``), and other steps' as their commands (``root``: the ``morphcat`` parser)."""
    def step(m: re.Match) -> str:
        command = STEP_COMMANDS.get(m[1])
        flag = _flags(_subcommands(root)[command]).get(m[2]) if root is not None and command else None
        if flag is None:
            return m[0]
        return f"morphcat {command} … {flag}" + ("" if m[3] in ("…", "True") else f" {m[3]}")

    message = re.sub(r"`(\w+)\((\w+)=([^)`]*)\)`", step, message)
    flags = _flags(parser)
    return re.sub(r"`([a-z_]+)`", lambda m: flags.get(m[1], m[0]), message)


def _parsers(command: str) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """``command``'s parser and the ``morphcat`` parser, for :func:`in_flags`."""
    root = build_parser()
    return _subcommands(root)[command], root


def _command_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The parser of the command ``args`` ran (``bench NAME``'s for a benchmark)."""
    for name in (args.command, getattr(args, "benchmark", None)):
        if name is None:
            break
        parser = _subcommands(parser)[name]
    return parser


# What a stopped command leaves, for its message (the others write their outputs whole or not at all).
STOPPED_HINTS = {"annotate": "finished shards are kept; the same command resumes from there"}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = " ".join(filter(None, (args.command, getattr(args, "benchmark", None))))
    quiet_bad_input_tracebacks()
    if args.command not in SELF_STOPPING:
        stop_on_signals()
    try:
        # Commands that run TensorFlow (set_defaults(tensorflow=True); each benchmark says so in
        # benchmarks.registry) import it once, quietly, before their flow starts.
        if getattr(args, "tensorflow", False):
            quiet_tensorflow()
        # serve's flow runs are deployment runs, in subprocesses that inherit these settings: they
        # keep Prefect's heartbeats; every other command runs its flows here and now.
        own_server = args.command not in NO_FLOW_COMMANDS and not api_url_configured()
        with temporary_server() if own_server else nullcontext(), \
                nullcontext() if args.command in DEPLOYMENT_COMMANDS else direct_run_settings():
            args.func(args)
    except MorphcatError as exc:
        print(f"morphcat {command}: {in_flags(str(exc), _command_parser(parser, args), parser)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ModuleNotFoundError as exc:
        if exc.name not in TRAIN_EXTRA:
            raise
        print(f"morphcat {command}: needs {exc.name}, which an annotation-only install lacks: "
              "pip install 'morphcat[train]'", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Stopped as exc:
        hint = STOPPED_HINTS.get(args.command)
        print(f"morphcat {args.command}: stopped by {exc}" + (f"; {hint}" if hint else ""), file=sys.stderr)
        return 128 + exc.signum
    return 0


if __name__ == "__main__":
    sys.exit(main())
