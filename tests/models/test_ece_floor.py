"""The ECE floor: what a perfectly calibrated model with the same confidences shows on as many rows."""

from __future__ import annotations

import numpy as np
import pytest

from models.calibration import ece_floor, expected_calibration_error


def _probs(confidence: np.ndarray) -> np.ndarray:
    """Two-class probabilities whose top class has ``confidence``."""
    return np.stack([confidence, 1 - confidence], axis=1)


@pytest.mark.parametrize("confidence, n, low, high", [
    (1.0, 50, 0.0, 0.0),  # always right as sure as it says: no gap to sample
    (0.7, 50, 0.03, 0.09),  # one bin: E|Binomial(50, 0.7)/50 − 0.7| ≈ 0.052
    (0.7, 5000, 0.002, 0.008),  # ≈ 0.0052: the floor falls as 1/√n
])
def test_the_floor_is_the_sampling_gap_of_a_calibrated_model(confidence, n, low, high):
    assert low <= ece_floor(_probs(np.full(n, confidence))) <= high


def test_a_calibrated_model_scores_about_its_floor_and_a_wrong_one_far_above():
    rng = np.random.default_rng(1)
    confidence = rng.uniform(0.5, 1.0, 233)
    probs = _probs(confidence)
    floor = ece_floor(probs)
    calibrated = [expected_calibration_error(probs, (rng.random(233) >= confidence).astype(int)) for _ in range(200)]
    assert np.mean(calibrated) == pytest.approx(floor, rel=0.15)
    overconfident = (rng.random(233) >= confidence - 0.2).astype(int)  # right 20 points less often than it says
    assert expected_calibration_error(probs, overconfident) > 2 * floor
    with pytest.raises(ValueError, match="at least one row"):
        ece_floor(np.zeros((0, 2)))
