"""catalogs.sources: is there a source at the centre of a model input; and the ``ood_flag`` rule
(catalogs.outputs) that combines it with the feature score."""

from __future__ import annotations

import numpy as np
import pytest

from catalogs.outputs import ood_flags
from catalogs.sources import MIN_SOURCE_SNR, central_source_snr
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
