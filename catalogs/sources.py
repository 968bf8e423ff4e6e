"""Is there a source at the centre of a cutout? A model-free check on the pixels a model sees.

A catalog cutout is centred on its object, so the centre of the model input must be brighter
than its outskirts. :func:`central_source_snr` is the signal-to-noise of the mean brightness in
the central disc above the median of the outer ring, the noise taken from the ring (robustly, by
its MAD); below ``MIN_SOURCE_SNR`` (a 5σ detection, the usual survey convention) there is no
centred source. It is one half of ``ood_flag`` (``catalogs.outputs.ood_flags``): it catches what
a weakly trained model's features can miss, such as empty sky placed next to its faintest
galaxies. Measured on the default 64 px input: the 700 real GZ2 galaxies of the shared sample
score at least 17 (median 373, 1 % below 91), synthetic empty sky 1–3, flat images 0.
"""

from __future__ import annotations

import numpy as np

MIN_SOURCE_SNR = 5.0  # no centred source below this central_source_snr
# The central disc and the outer ring of central_source_snr, as fractions of the input side.
SOURCE_RADIUS = 0.15
SKY_RADIUS = 0.35
MAD_TO_SIGMA = 1.4826


def central_source_snr(pixels: np.ndarray) -> np.ndarray:
    """Signal-to-noise (N,) of a centred source in model inputs ``pixels`` (N, H, W, C) in
    [0, 1]: (mean of the channel-mean brightness within ``SOURCE_RADIUS`` of the centre − its
    median beyond ``SKY_RADIUS``) / (σ of the ring / √pixels in the disc), σ = 1.4826 · MAD,
    at least one 8-bit step (a flat image has no noise to divide by)."""
    x = np.asarray(pixels, dtype=np.float32)
    if x.ndim != 4:
        raise ValueError(f"expected a batch of images (N, H, W, C), got shape {x.shape}")
    n, h, w, _ = x.shape
    grey = x.mean(axis=3).reshape(n, h * w)
    y, xx = np.mgrid[:h, :w]
    r = np.hypot((y + 0.5) / h - 0.5, (xx + 0.5) / w - 0.5).ravel()
    disc, ring = r < SOURCE_RADIUS, r > SKY_RADIUS
    sky = grey[:, ring]
    background = np.median(sky, axis=1)
    sigma = np.maximum(MAD_TO_SIGMA * np.median(np.abs(sky - background[:, None]), axis=1), 1.0 / 255.0)
    return (grey[:, disc].mean(axis=1) - background) / (sigma / np.sqrt(disc.sum()))
