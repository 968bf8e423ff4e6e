"""Errors of the export stage: a models folder that cannot be exported, and ONNX graphs that do
not reproduce their Keras models (every failure collected into one :class:`ParityError`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from catalogs.errors import MorphcatError


class ExportError(MorphcatError):
    """A models folder cannot be exported as it is."""


@dataclass(frozen=True)
class ParityFailure:
    """One disagreement between onnxruntime and Keras."""

    model: str  # the exported file's name, e.g. "classifier" or "captioner_step"
    check: str  # names | shape | values | classes | captions
    detail: str
    max_diff: float | None = None  # max abs diff (scaled by the reference's range for relative outputs)

    def __str__(self) -> str:
        return f"{self.model}: {self.check}: {self.detail}"


class ParityError(ExportError):
    """onnxruntime does not reproduce Keras; every failure of every model, collected."""

    def __init__(self, failures: list[ParityFailure]):
        self.failures = list(failures)
        diffs = [f.max_diff for f in self.failures if f.max_diff is not None]
        self.max_diff = max(diffs, key=lambda d: -1.0 if math.isnan(d) else d) if diffs else None
        worst = "" if self.max_diff is None else f"; max diff {self.max_diff:.3g}"
        lines = [f"the ONNX models do not reproduce the Keras models ({len(self.failures)} failure(s){worst}):"]
        lines += [f"  - {f}" for f in self.failures]
        super().__init__("\n".join(lines))
