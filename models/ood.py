"""The out-of-distribution score: how far an image is from the galaxies the classifier learnt.

A classifier trained from scratch is confidently wrong on what it never saw: on photos, empty sky,
noise or test patterns its top probability is ~1.0 (measured on the GZ2-trained default models),
so softmax confidence or energy cannot say "not a galaxy". The distance of the image's pooled
backbone features (the classifier's ``gap`` layer) to the training galaxies' features can::

    d(x)      = sqrt((f(x) − μ)ᵀ Σ⁻¹ (f(x) − μ))      Mahalanobis distance; μ, Σ from the training split
    ood_score = d(x) / d_q                            d_q: the ``quantile`` of d on the validation split
    ood_flag  = ood_score > OOD_THRESHOLD (= 1)

Σ is the Ledoit–Wolf shrunk covariance (a few hundred galaxies for 32–128 features would make the
plain estimate singular). The scale comes from *held-out* galaxies because training images sit
closer to μ than new ones. By construction ~1 % of galaxies like the validation ones are flagged
(``quantile`` = 0.99); an image scoring 2 is twice as far out as that.

A second, model-free check (``catalogs.sources.central_source_snr``: is there a source at the
centre?) catches what features alone can miss; ``catalogs.outputs.ood_flags`` combines the two
into ``ood_flag = ood_score > threshold or source_snr < MIN_SOURCE_SNR``.

Pure numpy (+ scikit-learn for the fit): the exporter bakes :meth:`OodReference.scores` into the
classifier's ONNX graph, and parity checks it against this implementation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OOD_QUANTILE = 0.99
OOD_THRESHOLD = 1.0  # ood_flag = ood_score > OOD_THRESHOLD; recorded in every bundle
FEATURES_LAYER = "gap"
MIN_FIT_ROWS = 8  # fewer training images than this describe no distribution


@dataclass(frozen=True)
class OodReference:
    """``mean`` (k,) and ``whitening`` (k, k) with ``‖(f − mean) · whitening‖`` the Mahalanobis
    distance; ``scale`` the distance at ``quantile`` on the calibration (validation) images."""

    mean: np.ndarray
    whitening: np.ndarray
    scale: float
    quantile: float
    n_fit: int
    n_calibration: int
    shrinkage: float

    def distances(self, features: np.ndarray) -> np.ndarray:
        f = np.asarray(features, dtype=np.float64)
        if f.ndim != 2 or f.shape[1] != self.mean.shape[0]:
            raise ValueError(f"expected features of shape (N, {self.mean.shape[0]}), got {f.shape}")
        return np.linalg.norm((f - self.mean) @ self.whitening, axis=1)

    def scores(self, features: np.ndarray) -> np.ndarray:
        return self.distances(features) / self.scale

    def summary(self) -> dict:
        """What a bundle records (the arrays stay inside the ONNX graph)."""
        return {"method": "mahalanobis", "features": FEATURES_LAYER, "quantile": self.quantile,
                "threshold": OOD_THRESHOLD, "scale": self.scale, "n_fit": self.n_fit,
                "n_calibration": self.n_calibration, "shrinkage": self.shrinkage}

    def to_dict(self) -> dict:
        return {**self.summary(), "mean": self.mean.tolist(), "whitening": self.whitening.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> "OodReference":
        mean = np.asarray(data["mean"], dtype=np.float64)
        whitening = np.asarray(data["whitening"], dtype=np.float64)
        if mean.ndim != 1 or whitening.shape != (mean.shape[0], mean.shape[0]):
            raise ValueError(f"an OOD reference needs mean (k,) and whitening (k, k), got {mean.shape}, "
                             f"{whitening.shape}")
        scale = float(data["scale"])
        if not scale > 0 or not np.isfinite(whitening).all() or not np.isfinite(mean).all():
            raise ValueError("an OOD reference needs finite arrays and a positive scale")
        return cls(mean, whitening, scale, float(data["quantile"]), int(data["n_fit"]),
                   int(data["n_calibration"]), float(data["shrinkage"]))


def fit_reference(fit_features: np.ndarray, calibration_features: np.ndarray,
                  quantile: float = OOD_QUANTILE) -> OodReference:
    """Fit μ, Σ on ``fit_features`` (the training split's, N × k) and the scale on
    ``calibration_features`` (held-out galaxies')."""
    from sklearn.covariance import LedoitWolf

    fit = np.asarray(fit_features, dtype=np.float64)
    calibration = np.asarray(calibration_features, dtype=np.float64)
    if fit.ndim != 2 or len(fit) < MIN_FIT_ROWS:
        raise ValueError(f"an OOD reference needs at least {MIN_FIT_ROWS} training feature rows, got {fit.shape}")
    if calibration.ndim != 2 or len(calibration) == 0 or calibration.shape[1] != fit.shape[1]:
        raise ValueError(f"an OOD reference needs held-out feature rows of width {fit.shape[1]}, "
                         f"got {calibration.shape}")
    if not 0.5 <= quantile < 1.0:
        raise ValueError(f"quantile must be in [0.5, 1), got {quantile}")
    estimator = LedoitWolf().fit(fit)
    # Σ⁻¹ = L Lᵀ (Cholesky), so (f − μ)ᵀ Σ⁻¹ (f − μ) = ‖(f − μ) L‖².
    whitening = np.linalg.cholesky(estimator.precision_)
    partial = OodReference(estimator.location_, whitening, 1.0, quantile, len(fit), len(calibration),
                           float(estimator.shrinkage_))
    scale = float(np.quantile(partial.distances(calibration), quantile))
    if not scale > 0:
        raise ValueError("the held-out features all sit at the training mean: no scale for an OOD score")
    return OodReference(partial.mean, whitening, scale, quantile, len(fit), len(calibration),
                        partial.shrinkage)
