"""One image → what the bundle says about it: class probabilities, the 37 GZ2 vote fractions per
question, the caption, the raw Grad-CAM map and the out-of-distribution verdict, computed by
the function catalog annotation uses (``export.serve.annotate.annotate_pixels``).

Uploads are checked for type and size here, then written to a temporary file and prepared by
``catalogs.inputs.model_input``, so an upload meets exactly the checks a catalog image does
(empty, truncated, not an image, too small, decompression bomb…) and fails with the same
``ImageError`` reasons. Only onnxruntime runs: nothing here imports TensorFlow.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from catalogs.decoding import to_model_floats
from catalogs.imaging import FITS_SUFFIXES, RASTER_SUFFIXES, UNSUPPORTED_TYPE, ImageError, load_rgb
from catalogs.inputs import ModelInput, crop_resize, model_input
from catalogs.tree import GZ2_TREE
from export.serve.annotate import annotate_pixels
from export.serve.runtime import LoadedBundle

UPLOAD_SUFFIXES = RASTER_SUFFIXES + FITS_SUFFIXES
# Streamlit's ``server.maxUploadSize`` (MB) is set to this too: the server refuses larger
# uploads before they reach the script, and check_upload refuses them if anything else calls it.
MAX_UPLOAD_MB = 10
MAX_UPLOAD_BYTES = MAX_UPLOAD_MB * 1024 * 1024
UPLOAD_TOO_LARGE = "upload_too_large"
# Side of the whole-image preview and of the model-crop view the Grad-CAM is drawn on: large
# enough to see structure, small enough to send to the browser quickly.
SHOWN_SIDE = 384
VIEW_SIDE = 256


@dataclass(frozen=True)
class PreparedImage:
    """An image ready for the models and for display: ``model`` (what the models see, from
    ``model_input``), ``shown`` (the whole image, ≤ ``SHOWN_SIDE`` px) and ``view`` (the crop
    the model sees, ``VIEW_SIDE`` px square), both uint8 RGB."""

    model: ModelInput
    shown: np.ndarray
    view: np.ndarray


@dataclass(frozen=True)
class ImageAnalysis:
    """The bundle's outputs for one image (``None`` where the bundle lacks the model)."""

    class_names: tuple[str, ...]
    probs: np.ndarray  # (C,)
    cam: np.ndarray  # (h, w) raw Grad-CAM of the predicted class, ≥ 0, not normalised
    votes: np.ndarray | None  # (37,) per-question fractions in tree order, NaN where not reached
    caption: str | None
    ood_score: float  # models.ood: feature distance over the bundle's scale
    ood_flag: bool  # ood_score above the bundle's threshold, or no centred source
    source_snr: float  # catalogs.sources.central_source_snr of the model input
    note: str | None  # conversions applied to the input (``ModelInput.note``)

    @property
    def label(self) -> str:
        return self.class_names[int(np.argmax(self.probs))]

    @property
    def confidence(self) -> float:
        return float(np.max(self.probs))


def check_upload(name: str, size: int) -> None:
    """Refuse an upload whose file name has no type morphcat decodes or that is too large."""
    if not name.lower().endswith(UPLOAD_SUFFIXES):
        raise ImageError(UNSUPPORTED_TYPE, f"{name}: not a supported image type "
                                           f"(one of {', '.join(UPLOAD_SUFFIXES)})")
    if size > MAX_UPLOAD_BYTES:
        raise ImageError(UPLOAD_TOO_LARGE, f"{name}: {size / 1024 / 1024:.1f} MB, more than the "
                                           f"{MAX_UPLOAD_MB} MB an upload may have")


def prepare_file(path: Path, spec) -> PreparedImage:
    """``path`` through ``model_input`` (every hostile-input check, before any full decode),
    then decoded once more for display."""
    prepared = model_input(Path(path), spec)
    rgb = load_rgb(Path(path))
    return PreparedImage(prepared, _fit(rgb, SHOWN_SIDE), crop_resize(rgb, VIEW_SIDE, prepared.crop))


def prepare_upload(name: str, data: bytes, spec) -> PreparedImage:
    """An uploaded file's bytes as a :class:`PreparedImage`, or :class:`ImageError` naming the
    upload (never the temporary file)."""
    check_upload(name, len(data))
    suffix = next(s for s in sorted(UPLOAD_SUFFIXES, key=len, reverse=True) if name.lower().endswith(s))
    with tempfile.TemporaryDirectory(prefix="morphcat-upload-") as folder:
        # Our own file name: the upload's name only chooses the decoder, never a path.
        path = Path(folder) / f"upload{suffix}"
        path.write_bytes(data)
        try:
            return prepare_file(path, spec)
        except ImageError as exc:
            raise ImageError(exc.reason, exc.message.replace(str(path), name)) from None


UPLOAD_ID = "upload"  # the object id an upload has no catalog for (template captions vary by id)


def analyse(bundle: LoadedBundle, inputs: Sequence[ModelInput],
            object_ids: Sequence[str] | None = None) -> list[ImageAnalysis]:
    """Run the bundle on a batch of model inputs, as catalog annotation does
    (``export.serve.annotate.annotate_pixels``: one onnxruntime run of the image models, captions,
    the out-of-distribution verdict)."""
    if not inputs:
        return []
    ids = list(object_ids) if object_ids is not None else [UPLOAD_ID] * len(inputs)
    out = annotate_pixels(bundle, to_model_floats(np.stack([m.pixels for m in inputs]), bundle.image), ids)
    if not out.finite.all():
        raise ValueError("the classifier returned NaN/inf for this image")
    votes = None if out.votes is None else GZ2_TREE.per_question(out.votes)
    names = tuple(bundle.class_names)
    return [ImageAnalysis(names, out.probs[i], out.cam[i], None if votes is None else votes[i],
                          None if out.captions is None else out.captions[i], float(out.ood_score[i]),
                          bool(out.ood_flag[i]), float(out.source_snr[i]), m.note)
            for i, m in enumerate(inputs)]


def votes_table(votes: np.ndarray) -> pl.DataFrame:
    """Per-question vote fractions (37,) as rows ``question`` (its text), ``answer``,
    ``fraction`` (null where the question is not reached), in tree order."""
    fractions = np.asarray(votes, dtype=np.float64)
    if fractions.shape != (len(GZ2_TREE),):
        raise ValueError(f"expected {len(GZ2_TREE)} vote fractions, got shape {fractions.shape}")
    return pl.DataFrame({
        "question_key": [ref.question.key for ref in GZ2_TREE.answers],
        "question": [ref.question.text for ref in GZ2_TREE.answers],
        "answer": [ref.answer.text for ref in GZ2_TREE.answers],
        "fraction": fractions,
    }, schema_overrides={"fraction": pl.Float64}).with_columns(pl.col("fraction").fill_nan(None))


def _fit(rgb: np.ndarray, side: int) -> np.ndarray:
    """``rgb`` shrunk (never enlarged) to fit in ``side``×``side``, aspect kept."""
    from PIL import Image

    image = Image.fromarray(rgb)
    image.thumbnail((side, side), Image.Resampling.LANCZOS)
    return np.asarray(image)
