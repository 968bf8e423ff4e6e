"""The out-of-distribution reference: Mahalanobis distance against scikit-learn's, calibration,
round trip, and refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.covariance import LedoitWolf

from models.ood import OOD_QUANTILE, OOD_THRESHOLD, OodReference, fit_reference

K = 12


def _galaxies(n, seed):
    """Correlated Gaussian features: a stand-in for one survey's pooled CNN features."""
    rng = np.random.default_rng(seed)
    mixing = np.random.default_rng(99).normal(size=(K, K))
    return rng.normal(size=(n, K)) @ mixing + 3.0


def test_distance_is_scikit_learns_mahalanobis_distance():
    fit, calibration, new = _galaxies(400, 0), _galaxies(200, 1), _galaxies(50, 2)
    ref = fit_reference(fit, calibration)
    theirs = np.sqrt(LedoitWolf().fit(fit).mahalanobis(new))  # sklearn returns squared distances
    np.testing.assert_allclose(ref.distances(new), theirs, rtol=1e-9)
    np.testing.assert_allclose(ref.scores(new), theirs / ref.scale, rtol=1e-9)


def test_the_scale_flags_about_one_percent_of_new_galaxies_and_every_outlier():
    ref = fit_reference(_galaxies(2000, 0), _galaxies(2000, 1))
    assert (ref.scores(_galaxies(2000, 1)) > OOD_THRESHOLD).mean() == pytest.approx(1 - OOD_QUANTILE, abs=1e-3)
    fresh = (ref.scores(_galaxies(5000, 3)) > OOD_THRESHOLD).mean()
    assert 0.003 < fresh < 0.025
    rng = np.random.default_rng(4)
    # Points off the galaxies' subspace, at the same overall magnitude, and far along it.
    off = rng.normal(size=(100, K)) * np.abs(_galaxies(100, 5)).mean() + 3.0
    far = _galaxies(100, 6) * 4
    assert (ref.scores(off) > OOD_THRESHOLD).mean() > 0.9
    assert (ref.scores(far) > OOD_THRESHOLD).all()


def test_round_trip_through_json_keeps_every_score():
    ref = fit_reference(_galaxies(300, 0), _galaxies(100, 1))
    again = OodReference.from_dict(json.loads(json.dumps(ref.to_dict())))
    x = _galaxies(20, 2)
    np.testing.assert_array_equal(again.scores(x), ref.scores(x))
    summary = ref.summary()
    assert summary["threshold"] == OOD_THRESHOLD and summary["n_fit"] == 300 and summary["n_calibration"] == 100
    assert 0 <= summary["shrinkage"] <= 1 and "mean" not in summary


@pytest.mark.parametrize("fit, calibration, quantile, needle", [
    (_galaxies(5, 0), _galaxies(10, 1), 0.99, "at least 8 training"),
    (_galaxies(50, 0), np.zeros((0, K)), 0.99, "held-out feature rows"),
    (_galaxies(50, 0), _galaxies(10, 1)[:, :3], 0.99, "width 12"),
    (_galaxies(50, 0), _galaxies(10, 1), 1.0, "quantile"),
])
def test_a_reference_that_cannot_be_fitted_says_why(fit, calibration, quantile, needle):
    with pytest.raises(ValueError, match=needle):
        fit_reference(fit, calibration, quantile)


def test_features_of_another_width_and_broken_dicts_are_refused():
    ref = fit_reference(_galaxies(50, 0), _galaxies(20, 1))
    with pytest.raises(ValueError, match=r"shape \(N, 12\)"):
        ref.scores(np.zeros((3, 5)))
    broken = {**ref.to_dict(), "whitening": [[1.0]]}
    with pytest.raises(ValueError, match="mean"):
        OodReference.from_dict(broken)
    with pytest.raises(ValueError, match="positive scale"):
        OodReference.from_dict({**ref.to_dict(), "scale": 0.0})
