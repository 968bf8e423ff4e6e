"""Parity of an ONNX file against its Keras model, in the order the best exporters check it:
tensor names, then shapes, then values against each output's tolerance. Every failure is
collected (never the first one only); the caller raises one :class:`~export.builder.errors.ParityError`.
"""

from __future__ import annotations

import numpy as np

from export.builder.errors import ParityFailure
from export.builder.specs import ExportSpec


def max_abs_diff(got: np.ndarray, expected: np.ndarray) -> float:
    """Largest |got − expected|; ``inf`` where only one side is NaN (a NaN never matches a number)."""
    g, e = np.asarray(got, np.float64), np.asarray(expected, np.float64)
    if g.size == 0:
        return 0.0
    if np.any(np.isnan(g) != np.isnan(e)):
        return float("inf")
    d = np.abs(g - e)
    return float(np.nanmax(d)) if not np.isnan(d).all() else 0.0


def check_names(spec: ExportSpec, input_names: list[str], output_names: list[str]) -> list[ParityFailure]:
    failures = []
    for role, names, wanted in (("inputs", input_names, [t.name for t in spec.inputs]),
                                ("outputs", output_names, spec.output_names)):
        if list(names) != wanted:
            failures.append(ParityFailure(spec.name, "names", f"ONNX {role} are {list(names)}, the spec says {wanted}"))
    return failures


def _fits(shape: tuple[int, ...], spec_shape: tuple[int | str, ...]) -> bool:
    return len(shape) == len(spec_shape) and all(isinstance(s, str) or s == d for d, s in zip(shape, spec_shape))


def compare_outputs(spec: ExportSpec, got: dict[str, np.ndarray],
                    expected: dict[str, np.ndarray]) -> tuple[dict, list[ParityFailure]]:
    """Per output ``{max_abs_diff, atol[, scale, relative_diff]}`` and the failures.

    An output missing on either side, or whose shape differs from the reference or from the spec,
    is reported and its values are not compared.
    """
    figures: dict[str, dict] = {}
    failures: list[ParityFailure] = []
    for t in spec.outputs:
        missing = [side for side, outs in (("onnxruntime", got), ("keras", expected)) if t.name not in outs]
        if missing:
            failures.append(ParityFailure(spec.name, "names",
                                          f"output {t.name!r} missing from {' and '.join(missing)}"))
            continue
        g, e = np.asarray(got[t.name]), np.asarray(expected[t.name])
        if g.shape != e.shape or not _fits(g.shape, t.shape):
            failures.append(ParityFailure(spec.name, "shape", f"{t.name}: onnxruntime {g.shape}, keras {e.shape}, "
                                                              f"spec {list(t.shape)}"))
            continue
        diff = max_abs_diff(g, e)
        fig = {"max_abs_diff": diff, "atol": t.atol}
        measured = diff
        if t.relative:
            scale = float(np.abs(e).max()) if e.size else 0.0
            measured = diff / scale if scale > 0 else diff
            fig.update(scale=scale, relative_diff=measured)
        figures[t.name] = fig
        if not measured <= t.atol:  # also catches NaN/inf
            what = "max abs diff / reference scale" if t.relative else "max abs diff"
            failures.append(ParityFailure(spec.name, "values", f"{t.name}: {what} {measured:.3g} > atol {t.atol:g}",
                                          max_diff=measured))
    return figures, failures


def row_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Share of rows equal in full (1.0 for no rows)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"cannot compare rows of shapes {a.shape} and {b.shape}")
    if len(a) == 0:
        return 1.0
    return float(np.mean(np.all(a.reshape(len(a), -1) == b.reshape(len(b), -1), axis=1)))
