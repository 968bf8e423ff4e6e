"""The embedding every annotated galaxy carries: a compact, L2-normalised summary of what the
classifier saw, for "more like this" searches and anomaly ranking.

    e(x) = normalise((f(x) − μ) · P)        f: the classifier's pooled ``gap`` features (N, k)
                                            μ, P: PCA of the training split's features (k, d)

PCA rather than a learned projection: it needs no extra training, keeps the directions in which
training galaxies differ most (the class head's features, so neighbours are morphologically
alike), and is a single matmul the exporter bakes into the classifier's ONNX graph. The width is
fixed by the output contract (``catalogs.outputs.EMBEDDING_DIM``) so every run's embeddings are
comparable column for column; when the training split has fewer rows or features than that, the
missing components are zero columns (cosine similarity is unchanged by them) and
``n_components`` records how many carry information.

Pure numpy (+ scikit-learn for the fit): parity checks the ONNX graph against :meth:`project`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_FIT_ROWS = 2  # PCA of one row has no direction
EMBEDDING_EPS = 1e-12  # a row exactly at the mean has no direction: it stays the zero vector


@dataclass(frozen=True)
class EmbeddingProjection:
    """``mean`` (k,) and ``components`` (k, dim): ``normalise((f − mean) · components)``."""

    mean: np.ndarray
    components: np.ndarray
    n_components: int  # leading columns fitted; the rest are zero
    explained_variance_ratio: float  # of the k features, by the fitted components
    n_fit: int

    @property
    def dim(self) -> int:
        return int(self.components.shape[1])

    def project(self, features: np.ndarray) -> np.ndarray:
        f = np.asarray(features, dtype=np.float64)
        if f.ndim != 2 or f.shape[1] != self.mean.shape[0]:
            raise ValueError(f"expected features of shape (N, {self.mean.shape[0]}), got {f.shape}")
        z = (f - self.mean) @ self.components
        norm = np.linalg.norm(z, axis=1, keepdims=True)
        return (z / np.maximum(norm, EMBEDDING_EPS)).astype(np.float32)

    def summary(self) -> dict:
        """What a bundle records (the arrays stay inside the ONNX graph)."""
        return {"method": "pca of the classifier's pooled features, L2-normalised", "dim": self.dim,
                "n_components": self.n_components, "explained_variance_ratio": self.explained_variance_ratio,
                "n_fit": self.n_fit}

    def to_dict(self) -> dict:
        return {**self.summary(), "mean": self.mean.tolist(), "components": self.components.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> "EmbeddingProjection":
        mean = np.asarray(data["mean"], dtype=np.float64)
        components = np.asarray(data["components"], dtype=np.float64)
        if mean.ndim != 1 or components.ndim != 2 or components.shape[0] != mean.shape[0]:
            raise ValueError(f"an embedding projection needs mean (k,) and components (k, d), got {mean.shape}, "
                             f"{components.shape}")
        if not (np.isfinite(mean).all() and np.isfinite(components).all()):
            raise ValueError("an embedding projection needs finite arrays")
        n = int(data["n_components"])
        if not 1 <= n <= components.shape[1]:
            raise ValueError(f"n_components {n} outside 1…{components.shape[1]}")
        return cls(mean, components, n, float(data["explained_variance_ratio"]), int(data["n_fit"]))


def fit_projection(features: np.ndarray, dim: int) -> EmbeddingProjection:
    """PCA of ``features`` (the training split's pooled features, N × k) to ``dim`` columns."""
    from sklearn.decomposition import PCA

    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) < MIN_FIT_ROWS:
        raise ValueError(f"an embedding needs at least {MIN_FIT_ROWS} training feature rows, got {f.shape}")
    if dim < 1:
        raise ValueError(f"an embedding needs dim ≥ 1, got {dim}")
    n = min(dim, f.shape[1], len(f) - 1)
    pca = PCA(n_components=n, svd_solver="full").fit(f)  # full: deterministic, k is ~100
    components = np.zeros((f.shape[1], dim))
    components[:, :n] = pca.components_.T
    return EmbeddingProjection(pca.mean_, components, n, float(pca.explained_variance_ratio_.sum()), len(f))
