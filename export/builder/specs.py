"""One declarative spec per exported ONNX file: tensor names, shapes with named dynamic axes,
dtypes, the opset, and per output the tolerance parity is checked against.

Pure data (no TensorFlow): the exporter converts and validates from it, ``bundle.json`` stores it,
and the runtime reads it back.
"""

from __future__ import annotations

from dataclasses import dataclass

from catalogs.outputs import EMBEDDING
from export.serve.bundle import ENCODER_OUTPUTS, IMAGE_INPUT, STEP_INPUTS, STEP_OUTPUTS

OPSET = 17  # tf2onnx 1.17 converts every op we use at 17 (the Keras LSTM → ONNX LSTM included)
BATCH = "batch"


@dataclass(frozen=True)
class TensorSpec:
    """A graph input or output. ``shape`` holds ints or axis names (dynamic axes).

    Outputs carry ``atol``; with ``relative`` the tolerance is scaled by the reference output's
    largest magnitude (Grad-CAM maps have no fixed scale: 1e-4 of a map peaking at 0.003 or at
    30 is what "the same map" means).
    """

    name: str
    shape: tuple[int | str, ...]
    dtype: str = "float32"
    atol: float | None = None
    relative: bool = False

    def to_dict(self) -> dict:
        out = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}
        if self.atol is not None:
            out.update(atol=self.atol, relative=self.relative)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "TensorSpec":
        return cls(data["name"], tuple(data["shape"]), data["dtype"], data.get("atol"), data.get("relative", False))


@dataclass(frozen=True)
class ExportSpec:
    """One ONNX file: ``<name>.onnx``, exported from the trained model ``kind``."""

    name: str
    kind: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    opset: int = OPSET

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "opset": self.opset,
                "inputs": [t.to_dict() for t in self.inputs], "outputs": [t.to_dict() for t in self.outputs]}

    @classmethod
    def from_dict(cls, data: dict) -> "ExportSpec":
        return cls(data["name"], data["kind"], tuple(TensorSpec.from_dict(t) for t in data["inputs"]),
                   tuple(TensorSpec.from_dict(t) for t in data["outputs"]), data["opset"])


# Tolerances of the issue: probabilities and CAMs 1e-4, vote fractions 1e-3, captioner 1e-4.
PROBS_ATOL = 1e-4
CAM_ATOL = 1e-4
VOTES_ATOL = 1e-3
CAPTIONER_ATOL = 1e-4
OOD_ATOL = 1e-4  # relative: scores are ~1 for galaxies, tens for a photo
EMBEDDING_ATOL = 1e-4  # unit vectors: 1e-4 moves a cosine similarity by < 1e-4
# Model-level agreement: predicted classes must all match; captions on at least 99 %.
CLASS_AGREEMENT_MIN = 1.0
CAPTION_AGREEMENT_MIN = 0.99


def image_input(size: int, channels: int) -> TensorSpec:
    return TensorSpec(IMAGE_INPUT, (BATCH, size, size, channels))


def classifier_spec(size: int, channels: int, n_classes: int, cam_hw: tuple[int, int],
                    embedding_dim: int) -> ExportSpec:
    return ExportSpec("classifier", "classifier", (image_input(size, channels),), (
        TensorSpec("probs", (BATCH, n_classes), atol=PROBS_ATOL),
        TensorSpec("cam", (BATCH, *cam_hw), atol=CAM_ATOL, relative=True),
        TensorSpec("ood_score", (BATCH,), atol=OOD_ATOL, relative=True),
        TensorSpec(EMBEDDING, (BATCH, embedding_dim), atol=EMBEDDING_ATOL),
    ))


def regressor_spec(size: int, channels: int, n_outputs: int) -> ExportSpec:
    return ExportSpec("regressor", "regressor", (image_input(size, channels),),
                      (TensorSpec("votes", (BATCH, n_outputs), atol=VOTES_ATOL),))


def encoder_spec(size: int, channels: int, units: int) -> ExportSpec:
    return ExportSpec("captioner_encoder", "captioner", (image_input(size, channels),),
                      tuple(TensorSpec(n, (BATCH, units), atol=CAPTIONER_ATOL) for n in ENCODER_OUTPUTS))


def step_spec(units: int, vocab_size: int) -> ExportSpec:
    token, h, c = STEP_INPUTS
    logits, h_next, c_next = STEP_OUTPUTS
    return ExportSpec("captioner_step", "captioner", (
        TensorSpec(token, (BATCH, 1), "int32"), TensorSpec(h, (BATCH, units)), TensorSpec(c, (BATCH, units)),
    ), (
        TensorSpec(logits, (BATCH, vocab_size), atol=CAPTIONER_ATOL),
        TensorSpec(h_next, (BATCH, units), atol=CAPTIONER_ATOL),
        TensorSpec(c_next, (BATCH, units), atol=CAPTIONER_ATOL),
    ))
