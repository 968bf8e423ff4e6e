"""The model bundle format: ONNX files plus ``bundle.json``, the contract between the exporter
(``export.builder``, which writes it) and the runtime (which reads it).

``bundle.json`` records every file's sha256 and size, and ``bundle_id`` = the first 16 hex digits
of the sha256 of the sorted ``name:sha256`` lines, so one id names exactly one set of model bytes.
Reading a bundle refuses (:class:`~export.serve.errors.BundleError`) a missing manifest, an
unknown format, a missing file or one whose bytes changed, naming every problem.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from export.serve.errors import BundleError

BUNDLE_FORMAT = 4  # 2: the classifier graph outputs ood_score; 3: framing, calibration, caption source;
# 4: the classifier graph outputs the embedding
MANIFEST = "bundle.json"
_CHUNK = 1 << 20
_REQUIRED_KEYS = ("bundle_id", "image", "models", "files", "requires")

# Graph and tensor names both halves rely on.
MERGED_NAME = "image_models"  # the one graph of every model that reads the image
INT8_NAME = "image_models.int8"  # its int8 copy (export --int8), served where it passed the agreement gate
FP16_NAME = "image_models.fp16"  # its float16 copy (export --fp16), for GPUs, likewise gated
# Precisions of the image graph a bundle is opened with (export.serve.runtime.open_bundle).
PRECISIONS = ("auto", "fp32", "int8", "fp16")
IMAGE_INPUT = "image"
ENCODER_OUTPUTS = ("h0", "c0")  # the captioner encoder's initial LSTM state
STEP_INPUTS = ("token", "h", "c")  # one greedy decoding step
STEP_OUTPUTS = ("logits", "h_next", "c_next")


def caption_source(models: dict) -> str | None:
    """Which captions annotation writes for a bundle's model entries: the learned captioner's or
    templates from the predicted votes (measured at training, recorded at export), None without
    either model. Templates need the votes, so a captioner-only bundle writes its own."""
    captioner = models.get("captioner")
    choice = (captioner or {}).get("caption_choice", {}).get("source")
    source = choice or ("template" if "regressor" in models else None)
    return "learned" if source == "template" and "regressor" not in models else source


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def bundle_id(hashes: dict[str, str]) -> str:
    lines = "".join(f"{name}:{digest}\n" for name, digest in sorted(hashes.items()))
    return hashlib.sha256(lines.encode()).hexdigest()[:16]


def read_manifest(folder: Path) -> dict:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise BundleError(f"{folder} is not a morphcat bundle: {MANIFEST} is missing")
    try:
        manifest = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise BundleError(f"{path}: bundle format {found!r}; this morphcat reads format {BUNDLE_FORMAT} "
                          "(re-export the models with this version: morphcat export)")
    missing = [k for k in _REQUIRED_KEYS if k not in manifest]
    if missing:
        raise BundleError(f"{path} lacks {', '.join(missing)}: not a complete bundle manifest")
    return manifest


def verify_files(folder: Path, manifest: dict) -> None:
    """Every recorded file present with its recorded sha256, and the id matching the hashes."""
    problems = []
    files = manifest.get("files") or {}
    for name, record in sorted(files.items()):
        path = Path(folder) / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif sha256_file(path) != record.get("sha256"):
            problems.append(f"{name} does not match its recorded sha256 (changed since export)")
    if not problems and bundle_id({n: r.get("sha256") for n, r in files.items()}) != manifest.get("bundle_id"):
        problems.append("bundle_id does not match the recorded file hashes")
    if problems:
        raise BundleError(f"bundle {folder} refused: " + "; ".join(problems))
