"""export.serve.camstats on hand-made heat maps with hand-computed statistics."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from catalogs.outputs import CAM_COLUMNS
from export.serve.camstats import CENTRAL_RADIUS, cam_statistics


def _map(h, w, cells):
    m = np.zeros((h, w))
    for (i, j), v in cells.items():
        m[i, j] = v
    return m


# Geometry A: 4×4 map over a 64 px input taken from the central 50 % of a 424 px cutout.
# Cells are 16 px; 1 input px = 0.5·424/64 = 3.3125 cutout px; the central disc has radius 16 px.
A = dict(input_size=64, crop=0.5, side=424)
# Geometry B: 5×5 map over a 50 px input that is the whole 100 px cutout (1 input px = 2 cutout px).
# Cells are 10 px; the central disc (radius 12.5 px) holds all of cell (2, 2) (corner distance
# √50 ≈ 7.1) and nothing of cell (2, 4) (nearest point 15 px away).
B = dict(input_size=50, crop=1.0, side=100)

CASES = {
    # all heat in the top-right cell, centre (56, 8): offset (24, −24) input px = (79.5, −79.5)
    # cutout px; the cell's nearest point to the centre is √(16² + 16²) > 16 away.
    "single hot cell": (_map(4, 4, {(0, 3): 5.0}), A, {
        "cam_peak_x": 56.0, "cam_peak_y": 8.0, "cam_peak_x_frac": 0.875, "cam_peak_y_frac": 0.125,
        "cam_centroid_dx": 79.5, "cam_centroid_dy": -79.5, "cam_offset_px": 79.5 * math.sqrt(2),
        "cam_offset_frac": 79.5 * math.sqrt(2) / 424, "cam_central_share": 0.0, "cam_entropy": 0.0,
        "cam_gini": 15 / 16}),
    # uniform: the peak is the first cell (row-major ties), centroid at the centre, the central
    # share is the disc's area π·0.25² of the input, maximal entropy, no inequality.
    "uniform": (np.full((4, 4), 0.3), A, {
        "cam_peak_x": 8.0, "cam_peak_y": 8.0, "cam_peak_x_frac": 0.125, "cam_peak_y_frac": 0.125,
        "cam_centroid_dx": 0.0, "cam_centroid_dy": 0.0, "cam_offset_px": 0.0, "cam_offset_frac": 0.0,
        "cam_central_share": math.pi / 16, "cam_entropy": 1.0, "cam_gini": 0.0}),
    # two equal peaks on the diagonal either side of the centre: the centroid is the centre;
    # each cell holds a quarter of the disc (area π·16²/4 of its 16²): share π/4;
    # entropy ln 2 / ln 16 = 1/4; Gini (n − 2)/n = 14/16.
    "two peaks": (_map(4, 4, {(1, 1): 2.0, (2, 2): 2.0}), A, {
        "cam_peak_x": 24.0, "cam_peak_y": 24.0, "cam_peak_x_frac": 0.375, "cam_peak_y_frac": 0.375,
        "cam_centroid_dx": 0.0, "cam_centroid_dy": 0.0, "cam_offset_px": 0.0, "cam_offset_frac": 0.0,
        "cam_central_share": math.pi / 4, "cam_entropy": 0.25, "cam_gini": 14 / 16}),
    # an off-centre blob: weights 1 at the centre cell (25, 25) and 3 at (45, 25): centroid x =
    # (25 + 3·45)/4 = 40, 15 input px = 30 cutout px right of centre; share 1/4; entropy
    # H(1/4, 3/4)/ln 25; Gini (22·1 + 24·3)/(25·4) = 0.94.
    "off-centre blob": (_map(5, 5, {(2, 2): 1.0, (2, 4): 3.0}), B, {
        "cam_peak_x": 45.0, "cam_peak_y": 25.0, "cam_peak_x_frac": 0.9, "cam_peak_y_frac": 0.5,
        "cam_centroid_dx": 30.0, "cam_centroid_dy": 0.0, "cam_offset_px": 30.0, "cam_offset_frac": 0.3,
        "cam_central_share": 0.25,
        "cam_entropy": -(0.25 * math.log(0.25) + 0.75 * math.log(0.75)) / math.log(25), "cam_gini": 0.94}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_statistics_of_hand_made_maps(case):
    heat, geo, want = CASES[case]
    got = cam_statistics(heat[None], geo["input_size"], geo["crop"], geo["side"])
    assert set(got) == set(CAM_COLUMNS) == set(want)
    for name, value in want.items():
        # the central share is measured by sub-sampling cells: 1e-4 of the disc's area
        tol = 1e-4 if name == "cam_central_share" else 1e-9
        assert got[name][0] == pytest.approx(value, abs=tol), name


def test_a_batch_equals_its_rows_and_scale_does_not_matter():
    maps = np.stack([CASES[c][0] for c in ("single hot cell", "uniform", "two peaks")])
    batch = cam_statistics(maps, 64, 0.5, np.array([424, 424, 424]))
    scaled = cam_statistics(maps * 1e-6, 64, 0.5, 424)  # heat is relative
    for i in range(3):
        one = cam_statistics(maps[i : i + 1], 64, 0.5, 424)
        for name in CAM_COLUMNS:
            assert batch[name][i] == pytest.approx(one[name][0], abs=1e-12)
            assert scaled[name][i] == pytest.approx(one[name][0], abs=1e-9)


def test_offsets_follow_each_cutouts_own_size():
    heat = np.stack([_map(4, 4, {(0, 3): 1.0})] * 2)
    got = cam_statistics(heat, 64, 0.5, np.array([424, 212]))
    assert got["cam_centroid_dx"].tolist() == [79.5, 39.75]
    assert got["cam_offset_frac"][0] == pytest.approx(got["cam_offset_frac"][1])


@pytest.mark.parametrize("bad", ["zeros", "nan", "inf"])
def test_maps_without_usable_heat_give_nan_without_warnings(bad):
    heat = np.stack([np.full((4, 4), 0.5), np.zeros((4, 4))])
    if bad != "zeros":
        heat[1, 1, 2] = np.nan if bad == "nan" else np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = cam_statistics(heat, 64, 0.5, 424)
    for name in CAM_COLUMNS:
        assert np.isnan(got[name][1]), name
        assert not np.isnan(got[name][0]), name


def test_negative_heat_and_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="≥ 0"):
        cam_statistics(-np.ones((1, 2, 2)), 64, 0.5, 424)
    with pytest.raises(ValueError, match="shape"):
        cam_statistics(np.ones((2, 2)), 64, 0.5, 424)


def test_a_single_cell_map_is_fully_concentrated():
    got = cam_statistics(np.ones((1, 1, 1)), 64, 0.5, 424)
    assert got["cam_entropy"][0] == 0.0 and got["cam_gini"][0] == 0.0
    assert got["cam_peak_x"][0] == 32.0 and got["cam_offset_px"][0] == 0.0
    # the disc (radius 16 px) covers π·16²/64² of the single 64 px cell
    assert got["cam_central_share"][0] == pytest.approx(math.pi * CENTRAL_RADIUS**2, abs=1e-4)
