"""Grad-CAM statistics: a batch of raw heat maps → one number per map and statistic, vectorised.

Input: ``maps`` of shape (N, h, w), ≥ 0, at the feature resolution of the network (the ReLU'd
Grad-CAM before any upsampling), covering the whole model input of ``input_size`` px, which is
the centre ``crop`` of the cutout's shorter side. Each cell's heat is taken as spread uniformly
over its footprint, so the statistics do not depend on an upsampling choice. Coordinates: x
right, y down, origin at the model input's top-left corner, a cell's position is its centre.

Statistics (their ``predictions`` column names are in ``catalogs.outputs``):

- **peak** ``cam_peak_x/_y``: centre of the hottest cell, in model-input pixels; ties go to the
  first cell in row-major order. ``…_frac``: the same divided by ``input_size``.
- **centroid offset** ``cam_centroid_dx/_dy``: heat-weighted mean cell centre minus the image
  centre, converted to *cutout* pixels (``× crop · cutout_side / input_size``; the crop is centred,
  so the cutout's centre is the input's). ``cam_offset_px`` its length; ``cam_offset_frac`` the
  length divided by the cutout's shorter side.
- **central share** ``cam_central_share``: share of the heat inside the disc of radius
  ``CENTRAL_RADIUS`` × ``input_size`` around the centre (for the default 64 px input from the
  central 50 % of a 424 px cutout: 53 cutout px). Cells straddling the circle count by the
  fraction of their area inside it (``_SAMPLES_PER_AXIS`` sub-samples per axis).
- **entropy** ``cam_entropy``: Shannon entropy of the normalised map (heat / total) in nats,
  divided by ln(h·w): 0 when one cell holds all the heat, 1 for a uniform map, comparable
  between networks of different feature resolution. A 1×1 map has entropy 0.
- **Gini** ``cam_gini``: Gini coefficient of the cells' heat, ``Σ(2i − n − 1)·x₍ᵢ₎ / (n·Σx)``
  over the n cells sorted ascending: 0 uniform, (n − 1)/n all heat in one cell.

A map without heat (all zeros) or with a non-finite value gives NaN for every statistic (the
output table stores them as null), without a warning. A negative value is a caller's bug and
raises ``ValueError``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from catalogs.outputs import (
    CAM_CENTRAL_SHARE,
    CAM_CENTROID_DX,
    CAM_CENTROID_DY,
    CAM_ENTROPY,
    CAM_GINI,
    CAM_OFFSET_FRAC,
    CAM_OFFSET_PX,
    CAM_PEAK_X,
    CAM_PEAK_X_FRAC,
    CAM_PEAK_Y,
    CAM_PEAK_Y_FRAC,
)

# Radius of the central disc, as a fraction of the model input side: a disc of half the input's
# width, where a centred galaxy's light (and a sound model's attention) should mostly fall.
CENTRAL_RADIUS = 0.25
# Sub-samples per axis over the whole map used to measure each cell's area inside the disc:
# the central share of a uniform map is then within 1e-4 of π·0.25².
_SAMPLES_PER_AXIS = 1024


def cam_statistics(maps: np.ndarray, input_size: int, crop, cutout_sides) -> dict[str, np.ndarray]:
    """Statistics of N heat maps (N, h, w) → {column name: float64 (N,)}.

    ``input_size``: the model input side (px); ``crop``: the fraction of each cutout's shorter
    side its input covers and ``cutout_sides``: each cutout's shorter side in px (each a scalar
    or (N,))."""
    m = np.asarray(maps, dtype=np.float64)
    if m.ndim != 3 or m.shape[1] == 0 or m.shape[2] == 0:
        raise ValueError(f"expected maps of shape (N, h, w), got {m.shape}")
    n, h, w = m.shape
    sides = np.broadcast_to(np.asarray(cutout_sides, dtype=np.float64), (n,))
    crop = np.broadcast_to(np.asarray(crop, dtype=np.float64), (n,))
    with np.errstate(invalid="ignore"):  # NaN compares False: its rows are blanked below
        if (m < 0).any():
            raise ValueError("Grad-CAM maps must be ≥ 0 (ReLU'd)")
    flat = m.reshape(n, h * w)
    total = flat.sum(axis=1)
    valid = np.isfinite(total) & (total > 0)
    # Rows without a usable map are computed on a uniform stand-in, then blanked to NaN.
    flat = np.where(valid[:, None], flat, 1.0)
    total = np.where(valid, total, float(h * w))
    p = flat / total[:, None]

    cell_w, cell_h = input_size / w, input_size / h
    xs = (np.arange(w) + 0.5) * cell_w  # cell centres, model-input px
    ys = (np.arange(h) + 0.5) * cell_h
    peak = np.argmax(flat, axis=1)
    peak_x, peak_y = xs[peak % w], ys[peak // w]
    grid = p.reshape(n, h, w)
    to_cutout = crop * sides / input_size  # cutout px per model-input px
    dx = (grid.sum(axis=1) @ xs - input_size / 2.0) * to_cutout
    dy = (grid.sum(axis=2) @ ys - input_size / 2.0) * to_cutout
    offset = np.hypot(dx, dy)
    central = p @ _disc_weights(h, w).ravel()
    logs = np.log(np.where(p > 0, p, 1.0))
    entropy = -(p * logs).sum(axis=1) / np.log(h * w) if h * w > 1 else np.zeros(n)
    ranks = 2.0 * np.arange(1, h * w + 1) - h * w - 1
    gini = (np.sort(p, axis=1) @ ranks) / (h * w)

    out = {
        CAM_PEAK_X: peak_x, CAM_PEAK_Y: peak_y,
        CAM_PEAK_X_FRAC: peak_x / input_size, CAM_PEAK_Y_FRAC: peak_y / input_size,
        CAM_CENTROID_DX: dx, CAM_CENTROID_DY: dy,
        CAM_OFFSET_PX: offset, CAM_OFFSET_FRAC: offset / sides,
        CAM_CENTRAL_SHARE: central, CAM_ENTROPY: entropy, CAM_GINI: gini,
    }
    return {name: np.where(valid, values, np.nan) for name, values in out.items()}


@lru_cache(maxsize=16)
def _disc_weights(h: int, w: int) -> np.ndarray:
    """Per cell, the fraction of its area inside the central disc (unit-square coordinates)."""
    k_y, k_x = -(-_SAMPLES_PER_AXIS // h), -(-_SAMPLES_PER_AXIS // w)
    u = (np.arange(w * k_x) + 0.5) / (w * k_x) - 0.5
    v = (np.arange(h * k_y) + 0.5) / (h * k_y) - 0.5
    inside = (u[None, :] ** 2 + v[:, None] ** 2) <= CENTRAL_RADIUS**2
    weights = inside.reshape(h, k_y, w, k_x).mean(axis=(1, 3))
    weights.setflags(write=False)
    return weights
