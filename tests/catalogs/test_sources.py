"""catalogs.sources: is there a source at the centre of a model input, how large is it; and the
``ood_flag`` rule (catalogs.outputs) that combines the first with the feature score."""

from __future__ import annotations

import numpy as np
import pytest

from catalogs.outputs import ood_flags
from catalogs.sources import MIN_SOURCE_SNR, central_source_snr, galaxy_extent
from models.ood import OOD_THRESHOLD


def _sky(seed, side=64, level=0.05, noise=0.02):
    return np.clip(np.random.default_rng(seed).normal(level, noise, (side, side, 3)), 0, 1)


def _blob(side=64, peak=0.3, width=4.0, at=(0.5, 0.5)):
    y, x = np.mgrid[:side, :side]
    r2 = (x + 0.5 - at[0] * side) ** 2 + (y + 0.5 - at[1] * side) ** 2
    return (peak * np.exp(-r2 / (2 * width**2)))[..., None] * np.ones(3)


# name → (image, is there a centred source)
SOURCES = {
    "faint centred galaxy on sky": (_sky(0) + _blob(peak=0.05), True),
    "bright centred galaxy": (_sky(1) + _blob(peak=0.8, width=10), True),
    "thin edge-on disc": (_sky(2) + np.pad(np.full((4, 40, 3), 0.3), ((30, 30), (12, 12), (0, 0))), True),
    "empty sky": (_sky(3), False),
    "empty deep sky": (_sky(4, level=0.01, noise=0.005), False),
    "flat grey": (np.full((64, 64, 3), 0.5), False),
    "source in a corner": (_sky(5) + _blob(peak=0.5, at=(0.1, 0.1)), False),
    "bright ring, dark centre": (1.0 - _blob(peak=0.9, width=12), False),
}


@pytest.mark.parametrize("case", list(SOURCES))
def test_the_centred_source_check(case):
    image, centred = SOURCES[case]
    (snr,) = central_source_snr(np.clip(image, 0, 1)[None])
    assert (snr >= MIN_SOURCE_SNR) == centred, snr


def test_flags_combine_the_feature_score_and_the_source_check():
    flags = ood_flags(np.array([0.5, 1.5, 0.5, 1.5]), np.array([50.0, 50.0, 1.0, 1.0]), OOD_THRESHOLD)
    assert flags.tolist() == [False, True, True, True]
    with pytest.raises(ValueError, match="batch of images"):
        central_source_snr(np.zeros((64, 64, 3)))


def _galaxy_image(side=200, radius=0.2, axis_ratio=1.0, at=(0.5, 0.5), seed=0, peak=180.0):
    """An 8-bit cutout: a Gaussian-edged elliptical disc on noisy sky, sizes as side fractions."""
    y, x = np.mgrid[:side, :side]
    u, v = (x + 0.5) / side - at[0], (y + 0.5) / side - at[1]
    r = np.hypot(u, v / axis_ratio)
    disc = peak / (1.0 + np.exp(np.minimum((r - radius) / 0.002, 50.0)))  # a sharp edge: isophote = radius
    sky = np.random.default_rng(seed).normal(12.0, 3.0, (side, side))
    return np.clip(np.repeat((sky + disc)[..., None], 3, axis=2), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("radius", [0.08, 0.15, 0.25])
def test_the_extent_of_a_round_galaxy_is_its_radius(radius):
    # The 90th percentile of a uniform disc's radii is √0.9 R; box downsampling to the 128 px
    # working grid and the 3×3 smoothing move the 3σ isophote out by up to three of its pixels.
    extent = galaxy_extent(_galaxy_image(radius=radius))
    assert np.sqrt(0.9) * radius <= extent <= np.sqrt(0.9) * radius + 3 / 128


def test_a_thin_edge_on_disk_is_measured_along_its_length_so_a_crop_keeps_it_whole():
    extent = galaxy_extent(_galaxy_image(radius=0.3, axis_ratio=0.15))
    assert extent > 0.24  # an area-equivalent radius would be √0.15 · 0.3 = 0.12: the ends cut off
    assert 2.75 * extent > 2 * 0.3  # the default galaxy_scale keeps the whole disk in the crop


@pytest.mark.parametrize("image", [
    np.random.default_rng(3).normal(12.0, 3.0, (128, 128, 3)).clip(0, 255).astype(np.uint8),  # empty sky
    _galaxy_image(radius=0.06, at=(0.15, 0.15)),  # a source, but in a corner
    np.zeros((64, 64, 3), np.uint8),  # black
])
def test_no_centred_source_has_no_extent(image):
    assert galaxy_extent(image) is None
