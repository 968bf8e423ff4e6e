"""Errors of the export stage and of opening a model bundle.

All derive from :class:`catalogs.errors.CatalogError`, so the CLI reports them as one message and
exit status 2: each is something the user acts on (a models folder to complete, a bundle to
re-export, a machine without CUDA), not a bug.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from catalogs.errors import CatalogError


class ExportError(CatalogError):
    """A models folder cannot be exported as it is."""


class BundleError(CatalogError):
    """A model bundle this runtime refuses to serve (tampered, incomplete, too new, wrong input)."""


class DeviceUnavailableError(CatalogError):
    """The device asked for (``device="cuda"``) cannot run here."""


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
