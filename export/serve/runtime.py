"""Opening a model bundle into onnxruntime sessions: the one place inference loads models.

:func:`open_bundle` refuses, before any inference and with the reason, a bundle this runtime
cannot serve: no or unreadable ``bundle.json``, an unknown bundle format, an opset or onnxruntime
version newer than the installed onnxruntime, an input size other than the caller's, a model or
precision the caller needs but the bundle lacks, a missing file or one whose bytes no longer match
their sha256, and files whose own metadata contradicts ``bundle.json``. It then picks the provider
(CUDA when it can really run, else CPU; see :mod:`export.serve.providers`) and builds every session.

TensorFlow is never imported here: annotation machines need onnxruntime and numpy only.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as _ort_state

from catalogs.inputs import ImageSpec
from catalogs.timing import best_seconds
from catalogs.tokenizer import Tokenizer
from export.serve.bundle import IMAGE_INPUT, MERGED_NAME, PRECISIONS, caption_source, read_manifest, verify_files
from export.serve.decode import greedy_decode_from_state, greedy_decode_ids
from export.serve.errors import BundleError
from export.serve.metadata import read_facts
from export.serve.providers import CPU, CUDA, choose_providers, cuda_unavailable_reason

# The lower-precision copies of the merged image graph (bundle.json key = precision), the export
# flag that writes each, and the provider auto considers it on: int8 for CPUs, float16 for GPUs.
VARIANTS = ("int8", "fp16")  # the image graph's copies an export may add
AUTO_VARIANT = {CPU: "int8", CUDA: "fp16"}
# auto serves a copy only when, here, it runs the image graph at least this much faster than fp32
# (a short probe when the bundle is opened; machines differ: AVX2 only, VNNI, AMX, GPUs).
MIN_SPEEDUP = 1.1
PROBE_IMAGES = 16
PROBE_RUNS = 3
ORT_ERRORS = tuple(getattr(_ort_state, n) for n in ("Fail", "InvalidGraph", "InvalidProtobuf", "NoSuchFile",
                                                      "RuntimeException", "InvalidArgument", "NotImplemented",
                                                      "EPFail"))
# Per-model facts each ONNX file's metadata must agree on with bundle.json.
_CROSS_CHECKED = ("class_names", "ood", "calibration", "embedding", "answer_names", "tokenizer", "max_len", "caption_choice")


@functools.cache
def max_supported_opset() -> int:
    """The newest default-domain opset the installed onnxruntime has operator schemas for."""
    return max(s.since_version for s in _ort_state.get_all_operator_schema() if s.domain in ("", "ai.onnx"))


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".")[:2] if p.isdigit())


def create_session(model: Path | bytes, providers: list[str],
                   intra_op_threads: int | None = None) -> ort.InferenceSession:
    """An onnxruntime session on ``model`` (a file or serialised bytes); load failures become
    :class:`BundleError` naming the file."""
    options = ort.SessionOptions()
    if intra_op_threads is not None:
        if intra_op_threads < 1:
            raise ValueError(f"intra_op_threads must be ≥ 1, got {intra_op_threads}")
        options.intra_op_num_threads = intra_op_threads
    source = str(model) if isinstance(model, Path) else model
    try:
        return ort.InferenceSession(source, sess_options=options, providers=providers)
    except ORT_ERRORS as exc:
        name = model.name if isinstance(model, Path) else "model"
        raise BundleError(f"onnxruntime {ort.__version__} cannot load {name}: {exc}") from None


def _serviceable(manifest: dict) -> list[str]:
    problems = []
    required = manifest.get("requires", {})
    wanted_ort = str(required.get("onnxruntime", "0"))
    if _version_tuple(wanted_ort) > _version_tuple(ort.__version__):
        problems.append(f"it was validated on onnxruntime {wanted_ort}, this is {ort.__version__} (upgrade "
                        "onnxruntime or re-export with this one)")
    opset = int(required.get("opset", 0))
    if opset > max_supported_opset():
        problems.append(f"it needs opset {opset}, onnxruntime {ort.__version__} serves up to {max_supported_opset()}")
    return problems


def _file_names(manifest: dict) -> dict[str, str]:
    """Exported file names → file: every model's fp32 files and the merged image graph."""
    names = {name: file for entry in manifest["models"].values() for name, file in entry.get("files", {}).items()}
    if "merged" in manifest:
        names[MERGED_NAME] = manifest["merged"]["file"]
    return names


def _refusal(manifest: dict, precision: str) -> str | None:
    """Why this bundle's ``precision`` copy of the image graph must not be served, or None."""
    variant = manifest.get(precision)
    if variant is None:
        return f"the bundle has no {precision} image graph (export it with `export_bundle({precision}=True)`)"
    if not variant["gate"]["passed"]:
        return (f"the {precision} image graph failed the agreement gate at export: "
                + "; ".join(variant["gate"]["failed"]))
    return None


def probe_speedup(fp32: ort.InferenceSession, other: ort.InferenceSession, image: ImageSpec) -> float:
    """How many times faster ``other`` runs than ``fp32`` here, on a small batch (best of a few runs)."""
    x = np.random.default_rng(0).random((PROBE_IMAGES, image.size, image.size, image.channels), np.float32)
    fp32_s, other_s = (best_seconds(lambda s=s: s.run(None, {IMAGE_INPUT: x}), PROBE_RUNS) for s in (fp32, other))
    return fp32_s / other_s


def _choose_precision(precision: str, manifest: dict, sessions: dict, providers: list[str], folder: Path,
                      intra_op_threads: int | None, image: ImageSpec) -> tuple[str, str]:
    """(precision served, why), replacing the merged fp32 session by the chosen copy's."""
    if precision == "fp32":
        return "fp32", "asked for"
    candidate = AUTO_VARIANT[providers[0]] if precision == "auto" else precision
    if precision == "auto" and (refusal := _refusal(manifest, candidate)) is not None:
        return "fp32", refusal
    entry = manifest[candidate]
    other = create_session(folder / entry["file"], providers, intra_op_threads)
    facts = read_facts(other.get_modelmeta().custom_metadata_map)
    if (facts.get("image"), facts.get("computes"), facts.get("gate")) != (
            manifest["image"], manifest["merged"]["computes"], entry["gate"]):
        raise BundleError(f"bundle {folder} refused: {entry['file']}: image, computes or gate in "
                          "bundle.json differ from the file's own metadata")
    if precision != "auto":
        sessions[MERGED_NAME] = other
        return candidate, "asked for"
    where = "this CPU" if providers[0] == CPU else "this GPU"
    speedup = probe_speedup(sessions[MERGED_NAME], other, image)
    if speedup < MIN_SPEEDUP:
        return "fp32", f"{candidate} only ×{speedup:.2f} as fast as fp32 on {where} (needs ×{MIN_SPEEDUP:g})"
    sessions[MERGED_NAME] = other
    figures = entry["comparison"]
    return candidate, (f"passed the agreement gate (classes {figures.get('class_agreement', 1.0):.1%} identical) and "
                       f"runs ×{speedup:.2f} as fast as fp32 on {where}")


def open_bundle(path, *, device: str = "auto", intra_op_threads: int | None = None,
                expect_image_size: int | None = None, require: Iterable[str] = (),
                precision: str = "auto") -> "LoadedBundle":
    """Verify the bundle at ``path`` and open its models in onnxruntime.

    ``device``: ``auto`` (CUDA when it can run here, else CPU), ``cpu`` or ``cuda`` (an error
    where CUDA cannot run). ``intra_op_threads``: threads per operator (default: onnxruntime's,
    one per physical core). ``expect_image_size``: the input size the caller prepares images at.
    ``require``: model kinds the caller needs (``classifier``, ``regressor``, ``captioner``).
    ``precision``: ``auto`` (on the CPU the int8 image graph, on CUDA the float16 one, where it
    passed its agreement gate at export and a short probe finds it faster here; else fp32),
    ``fp32``, or ``int8`` / ``fp16`` (an error unless the bundle has that graph and it passed).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    folder = Path(path)
    manifest = read_manifest(folder)
    problems = _serviceable(manifest)
    image = ImageSpec(**manifest["image"])
    has = frozenset(manifest["models"])
    if expect_image_size is not None and expect_image_size != image.size:
        problems.append(f"its models take {image.size}×{image.size} px images, not {expect_image_size} (the bundle "
                        f"takes {image.size}×{image.size} px model inputs, not the {expect_image_size} px expected here)")
    lacking = sorted(set(require) - has)
    if lacking:
        problems.append(f"it has no {', '.join(lacking)} (it has: {', '.join(sorted(has)) or 'nothing'})")
    if precision in VARIANTS and (refusal := _refusal(manifest, precision)):
        problems.append(f"precision {precision} was asked for, but {refusal}")
    if problems:
        raise BundleError(f"bundle {folder} cannot be served: " + "; ".join(problems))
    verify_files(folder, manifest)
    providers = choose_providers(device)
    sessions = {name: create_session(folder / file, providers, intra_op_threads)
                for name, file in _file_names(manifest).items()}
    _cross_check(folder, manifest, sessions)
    served, why = _choose_precision(precision, manifest, sessions, providers, folder, intra_op_threads, image)
    return LoadedBundle(folder, manifest, sessions, served, why)


def _cross_check(folder: Path, manifest: dict, sessions: dict[str, ort.InferenceSession]) -> None:
    """bundle.json is not hashed (it holds the hashes): its facts must equal those the exporter
    wrote into each file, so an edited manifest cannot relabel a model."""
    problems = []
    image = ImageSpec(**manifest["image"])
    want_shape = [image.size, image.size, image.channels]
    for name, session in sessions.items():
        for tensor in session.get_inputs():
            if tensor.name == IMAGE_INPUT and list(tensor.shape[1:]) != want_shape:
                problems.append(f"{name} takes images of shape {list(tensor.shape[1:])}, bundle.json says "
                                f"{want_shape}")
    if MERGED_NAME in sessions:
        facts = read_facts(sessions[MERGED_NAME].get_modelmeta().custom_metadata_map)
        for key, want in (("image", manifest["image"]), ("computes", manifest["merged"]["computes"])):
            if facts.get(key) != want:
                problems.append(f"{manifest['merged']['file']}: {key} in bundle.json differs from the file's own metadata")
    for kind, entry in manifest["models"].items():
        for name in entry.get("files", {}):
            if name not in sessions:
                continue
            facts = read_facts(sessions[name].get_modelmeta().custom_metadata_map)
            for key in ("image", *_CROSS_CHECKED):
                want = manifest["image"] if key == "image" else entry.get(key)
                if key in facts and facts[key] != want:
                    problems.append(f"{name}: {key} in bundle.json differs from the file's own metadata")
    if problems:
        raise BundleError(f"bundle {folder} refused: " + "; ".join(problems))


class LoadedBundle:
    """A verified bundle with open onnxruntime sessions. Images are float32 NHWC in [0, 1],
    prepared with :attr:`image` (``catalogs.inputs.crop_resize`` then × ``image.scale``)."""

    def __init__(self, path: Path, manifest: dict, sessions: dict[str, ort.InferenceSession], precision: str,
                 precision_reason: str = "asked for"):
        self.path = path
        self.manifest = manifest
        self.precision = precision  # of the image graph that runs: fp32, int8 or fp16
        self.precision_reason = precision_reason
        self.bundle_id: str = manifest["bundle_id"]
        self.image = ImageSpec(**manifest["image"])
        self.has: frozenset[str] = frozenset(manifest["models"])
        models = manifest["models"]
        self.class_names: list[str] = list(models.get("classifier", {}).get("class_names", []))
        # ood_flag = ood_score > this (models.ood); None without a classifier.
        self.ood_threshold: float | None = models.get("classifier", {}).get("ood", {}).get("threshold")
        self.answer_names: list[str] = list(models.get("regressor", {}).get("answer_names", []))
        captioner = models.get("captioner")
        self.tokenizer = Tokenizer.from_dict(captioner["tokenizer"]) if captioner else None
        self.max_len: int | None = captioner["max_len"] if captioner else None
        self.caption_source: str | None = caption_source(models)
        self._sessions = sessions
        first = next(iter(sessions.values()))
        self.provider: str = first.get_providers()[0]  # what runs, not what was asked for
        # Why CUDA is not used (None when it is, or when CPU was asked for).
        self.cuda_note: str | None = cuda_unavailable_reason() if self.provider != "CUDAExecutionProvider" else None

    def __repr__(self) -> str:
        return (f"LoadedBundle({self.bundle_id}, has={sorted(self.has)}, {self.image.size}px, "
                f"{self.precision}, {self.provider})")

    def _session(self, kind: str, name: str) -> ort.InferenceSession:
        if kind not in self.has:
            raise BundleError(f"bundle {self.bundle_id} has no {kind} (it has: {', '.join(sorted(self.has))})")
        return self._sessions[name]

    def _images(self, images) -> np.ndarray:
        x = np.ascontiguousarray(images, dtype=np.float32)
        s = self.image
        if x.ndim != 4 or x.shape[1:] != (s.size, s.size, s.channels):
            raise ValueError(f"expected images of shape (N, {s.size}, {s.size}, {s.channels}), got {x.shape}")
        return x

    def captions(self, images) -> list[str]:
        """Greedy captions for a batch of prepared images (encoder, then batched decoding steps)."""
        encoder = self._session("captioner", "captioner_encoder")
        ids = greedy_decode_ids(encoder, self._sessions["captioner_step"], self._images(images), self.max_len)
        return self.tokenizer.decode(ids)

    @property
    def merged(self) -> bool:
        """Whether one graph computes every image model (``export.builder.merge``)."""
        return MERGED_NAME in self._sessions

    def infer(self, images) -> dict[str, np.ndarray]:
        """Every image-model output for a batch in one call: ``probs``, ``cam``, ``ood_score`` (classifier),
        ``votes`` (regressor), ``h0``, ``c0`` (captioner encoder), those the bundle has. One
        onnxruntime run of the merged graph when the bundle has it, so shared layers run once."""
        x = self._images(images)
        if self.merged:
            session = self._sessions[MERGED_NAME]
            return dict(zip([o.name for o in session.get_outputs()], session.run(None, {IMAGE_INPUT: x})))
        out: dict[str, np.ndarray] = {}
        for kind, name in (("classifier", "classifier"), ("regressor", "regressor"), ("captioner", "captioner_encoder")):
            if kind in self.has:
                session = self._sessions[name]
                out.update(zip([o.name for o in session.get_outputs()], session.run(None, {IMAGE_INPUT: x})))
        return out

    def captions_from_state(self, h0: np.ndarray, c0: np.ndarray) -> list[str]:
        """Greedy captions from the encoder's initial states (``infer``'s ``h0``, ``c0``)."""
        step = self._session("captioner", "captioner_step")
        # On CUDA the LSTM state stays on the GPU between the (many, small) steps.
        device = "cuda" if self.provider == CUDA else None
        return self.tokenizer.decode(greedy_decode_from_state(step, h0, c0, self.max_len, device))
