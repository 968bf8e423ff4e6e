"""The pixel grid and what ``render`` draws on it: GalSim light profiles, and numpy fields for
the structure GalSim has no profile for.

Profiles are drawn with ``method="no_pixel"`` (real-space sampling for Sérsic/exponential/
Gaussian, an FFT for the inclined disks) because the PSF image carries the pixel response; the
central pixels of every Sérsic, and small stamps (knots, background galaxies, stars), are
integrated over the pixel by drawing them subsampled and binning, since a cusp sampled at one
point can put several times the right flux in the central pixel. ``galsim.GSParams`` relaxes the
folding threshold to 1% and caps the FFT size, which keeps the FFT-drawn disks at a few ms. A
disk is normalised by its central surface brightness, a Sérsic by its surface brightness at the
effective radius or by its flux (a bulge's flux is B/T of the total).

numpy adds, on the same grid, the structure GalSim has no profile for: log-spiral arms
multiply the GalSim-drawn disk by ``((1 + cos(m(θ - ln(r/r0)/tan p) - φ))/2)^k`` (disk-plane
coordinates) and a clumpy log-normal texture, which costs a few ms where summing ~120 GalSim
knots costs ~300 ms a galaxy; flat-topped (super-Gaussian) bars; Gaussian rings; the clumpy
texture of irregulars; edge-on dust lanes (a transmission multiplied onto disk and bulge before
the PSF, more opaque in g than in i); tidal tails (log-spiral arcs fading along their length);
the tidal bending of merger bodies (a bilinear resampling of their GalSim images).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import scipy.ndimage

from catalogs.synthetic.truth import _DISK_Q0

_DUST_TAU = np.array([1.30, 1.00, 0.75])  # extinction per band (g, r, i) relative to r


def _galsim():
    """GalSim, imported on first use: only the rendering needs it, and it is slow to import."""
    import galsim

    return galsim


@lru_cache(maxsize=1)
def _gsparams():
    """Folding (light wrapped round the FFT box) allowed at 1% instead of 0.5%, and a cap on the
    FFT size: the FFT-drawn profiles (inclined disks, the PSF) stay at a few ms each."""
    return _galsim().GSParams(folding_threshold=1e-2, maxk_threshold=2e-3, maximum_fft_size=4096)


class _Scene:
    """The pixel grid (internal resolution) and the per-band images being built up."""

    def __init__(self, n: int, shift: float):
        self.n = n
        c = np.arange(n, dtype=np.float32) - (n - 1) / 2.0
        self.x, self.y = np.meshgrid(c, c)  # y grows downwards in the final image; irrelevant
        self.target = np.zeros((3, n, n), np.float32)
        self.others = np.zeros((3, n, n), np.float32)
        self.shift = shift

    def px(self, frac: float) -> float:
        return frac * self.n

    def pixel(self, x: float, y: float) -> tuple[float, float]:
        """Frame position (fractions, 0 at the centre) → 0-based (column, row) pixel coordinates."""
        return x * self.n + (self.n - 1) / 2.0, y * self.n + (self.n - 1) / 2.0

    def frame(self, x0, y0, pa, q):
        """Coordinates along the major axis (u) and the deprojected minor axis (v/q)."""
        dx, dy = self.x - self.px(x0), self.y - self.px(y0)
        c, s = math.cos(pa), math.sin(pa)
        u = dx * c + dy * s
        v = (-dx * s + dy * c) / q
        return u, v

    def add(self, profile, amplitude, sed, layer="target"):
        dest = self.target if layer == "target" else self.others
        dest += (np.asarray(sed, np.float32)[:, None, None] * np.float32(amplitude)) * profile[None]

    def draw(self, prof, x: float, y: float, centre: int = 0) -> np.ndarray:
        """GalSim profile ``prof`` centred at frame position (x, y), drawn over the whole grid and
        sampled at pixel centres (``method="no_pixel"``: the PSF image carries the pixel
        response). With ``centre`` > 0 the (2·centre+1)² pixels round the centre are integrated
        over the pixel instead (drawn 8×8 subsampled, then binned): a Sérsic cusp sampled at one
        point can put several times the right flux into the central pixel."""
        img = _galsim().ImageF(self.n, self.n, scale=1.0)
        prof.drawImage(image=img, method="no_pixel", offset=(x * self.n, y * self.n))
        out = img.array
        if centre:
            stamp = self.stamp(prof, x, y, centre, sub=8)
            if stamp is not None:
                out[stamp[1]] = stamp[0]
        return out

    def stamp(self, prof, x: float, y: float, half: int, sub: int = 1):
        """``prof`` drawn by GalSim on the pixels within ``half`` of its centre (clipped to the
        frame), integrated over each pixel by drawing it ``sub``×``sub`` subsampled and binning.
        → (array, (row slice, column slice)), or None when the stamp is off the frame."""
        cx, cy = self.pixel(x, y)
        ix, iy = int(round(cx)), int(round(cy))
        x0, x1 = max(ix - half, 0), min(ix + half + 1, self.n)
        y0, y1 = max(iy - half, 0), min(iy + half + 1, self.n)
        if x0 >= x1 or y0 >= y1:
            return None
        w, h = x1 - x0, y1 - y0
        img = _galsim().ImageF(w * sub, h * sub, scale=1.0 / sub)
        # the stamp spans pixels x0-½ … x1-½; GalSim puts the profile at its true centre + offset
        offset = ((cx - (x0 - 0.5 + w / 2.0)) * sub, (cy - (y0 - 0.5 + h / 2.0)) * sub)
        prof.drawImage(image=img, method="no_pixel", offset=offset)
        a = img.array if sub == 1 else img.array.reshape(h, sub, w, sub).sum(axis=(1, 3))
        return a, (slice(y0, y1), slice(x0, x1))

    def add_stamp(self, prof, x, y, half, sed, sub=2, layer="target"):
        s = self.stamp(prof, x, y, half, sub)
        if s is not None:
            dest = self.target if layer == "target" else self.others
            dest[(slice(None), *s[1])] += np.asarray(sed, np.float32)[:, None, None] * s[0][None]



# GalSim profiles, in pixel units. A disk's ``sb`` is its (face-on equivalent) central surface
# brightness, a Sérsic's ``ie`` its surface brightness at the effective radius, both per pixel in
# sky sigma.


def _sersic_profile(n, re, q, pa, ie=None, flux=None):
    """A Sérsic (``galsim.Sersic``) whose effective isophote has semi-axes re and q·re at position
    angle pa, normalised by its flux or by ``ie``."""
    gs = _galsim()
    hlr = re * math.sqrt(q)  # the shear keeps area: the circular radius is √(major·minor)
    prof = gs.Sersic(n=n, half_light_radius=hlr, gsparams=_gsparams())
    if flux is None:
        flux = ie / prof.xValue(gs.PositionD(hlr, 0.0))
    return prof.withFlux(flux).shear(q=q, beta=pa * gs.radians)


def _flat_exp_profile(h, q, pa, sb):
    """A thin exponential disk (``galsim.Exponential`` sheared to axis ratio q): scale length h
    along the major axis, central surface brightness sb."""
    gs = _galsim()
    prof = gs.Exponential(scale_radius=h * math.sqrt(q), flux=2 * math.pi * h * h * q * sb, gsparams=_gsparams())
    return prof.shear(q=q, beta=pa * gs.radians)


def _inclined_disk_profile(h, q, pa, sb, thickness=None):
    """An exponential disk with a sech² vertical profile of scale height ``thickness``·h
    (``galsim.InclinedExponential``) at the inclination that gives the apparent axis ratio q of
    ``_sample_disk_params``. Its flux, 2π h² q sb, is that of a flat disk of central surface
    brightness sb seen with axis ratio q."""
    gs = _galsim()
    q0 = _DISK_Q0 if thickness is None else thickness
    cos_i = math.sqrt(max(q * q - q0 * q0, 0.0) / (1.0 - q0 * q0))
    prof = gs.InclinedExponential(math.acos(min(cos_i, 1.0)) * gs.radians, scale_radius=h, scale_h_over_r=q0,
                                  flux=2 * math.pi * h * h * q * sb, gsparams=_gsparams())
    return prof.rotate(pa * gs.radians)


def _knot(scene, x, y, sigma_px, peak, sed, layer="target"):
    """A small Gaussian (``galsim.Gaussian``) of peak surface brightness ``peak``, drawn on its own
    pixel-integrated stamp: HII regions, star-forming clumps."""
    prof = _galsim().Gaussian(sigma=sigma_px, flux=peak * 2 * math.pi * sigma_px**2, gsparams=_gsparams())
    scene.add_stamp(prof, x, y, int(math.ceil(4 * sigma_px)) + 1, sed, sub=2, layer=layer)


# numpy fields on the grid: structure GalSim has no profile for


def _ramp(r, r0, power=4.0):
    """0 well inside r0, 1 well outside: where arms start."""
    return 1.0 / (1.0 + (r0 / np.maximum(r, 1e-3)) ** power)


def _texture(rng, n, cells, strength):
    """A smooth log-normal random field: star formation is clumpy."""
    field = rng.standard_normal((cells, cells)).astype(np.float32)
    big = scipy.ndimage.zoom(field, n / cells, order=1, grid_mode=True, mode="nearest")
    return np.exp(strength * big[:n, :n])


def _arm_wave(r, theta, h, arms):
    """Log-spiral arm modulation of the disk, ((1+cos(m(θ - ln(r/r0)/tan p) - φ))/2)^k, zero
    inside the arms' start r0; arms fade a little more slowly than the disk (scale 1.1 h)."""
    m, r0 = arms["m"], arms["start"]
    lnr = np.log(np.maximum(r, 1e-3) / r0)
    psi = m * (theta - lnr / math.tan(math.radians(arms["pitch"])) - arms["phase"])
    wave = (0.5 * (1.0 + np.cos(psi))) ** arms["sharp"]
    return wave * _ramp(r, r0) * np.exp(r / (11.0 * h))


def _arm_knots(scene, rng, geom, arms, h, amplitude, sed):
    """HII regions strung along the arms."""
    m, r0 = arms["m"], arms["start"]
    for _ in range(arms["knots"]):
        j = int(rng.integers(0, m))
        rr = r0 * math.exp(rng.uniform(0.0, math.log(max(4.0 * h / r0, 1.5))))
        th = arms["phase"] + 2 * math.pi * j / m + math.log(rr / r0) / math.tan(math.radians(arms["pitch"]))
        # disk-plane (u, v) → image offset
        u, v = rr * math.cos(th), rr * math.sin(th) * geom["q"]
        c, s = math.cos(geom["pa"]), math.sin(geom["pa"])
        x = geom["x"] + (u * c - v * s) / scene.n
        y = geom["y"] + (u * s + v * c) / scene.n
        _knot(scene, x, y, rng.uniform(0.6, 1.4) * max(1.0, scene.n / 212),
              amplitude * rng.uniform(0.5, 1.5) * math.exp(-rr / (2 * h)), sed)


def _bar(u, v, bar):
    """A flat-topped, sharp-ended bar in disk-plane coordinates."""
    c, s = math.cos(bar["angle"]), math.sin(bar["angle"])
    bu = (u * c + v * s) / bar["length"]
    bv = (-u * s + v * c) / (bar["length"] * bar["axis_ratio"])
    return np.exp(-((bu * bu + bv * bv) ** 2))


def _ring(r, ring):
    return np.exp(-0.5 * ((r - ring["radius"]) / ring["width"]) ** 2)


def _dust_transmission(u, v_img, dust, h):
    """Edge-on dust lane: more opaque in g than in i, strongest near the centre."""
    tau = dust["tau"] * np.exp(-0.5 * ((v_img - dust["offset"]) / dust["width"]) ** 2) * np.exp(-np.abs(u) / (2.5 * h))
    return np.exp(-_DUST_TAU[:, None, None].astype(np.float32) * tau[None])


def _tidal_tail(u, v, tail, size):
    """A log-spiral arc leaving a body, fading and widening along its length."""
    r = np.hypot(u, v)
    theta = np.arctan2(v, u) * tail["sense"]
    t = np.mod(theta - tail["angle"] * tail["sense"], 2 * math.pi)
    r_tail = 0.6 * size * np.exp(t * math.tan(math.radians(tail["pitch"])))
    width = 0.08 * size * (1.0 + 0.6 * t)
    # fade along the arc, reaching exactly 0 before the arc would wrap round (t = 2π)
    end = min(tail["length"], 2 * math.pi - 0.5)
    along = np.exp(-t / (0.5 * end)) * np.clip(1.0 - t / end, 0.0, 1.0) ** 0.5
    return np.exp(-0.5 * ((r - r_tail) / width) ** 2) * along * _ramp(r, 0.6 * size)


def _bend(scene, img, x, y, pa, q, bend, size_px):
    """Tidal bending of a GalSim-drawn body into a banana: the light at (u, v) along/across the
    body comes from (u, v + bend·q·u²/size) (bilinear resampling, within 3.5 sizes of the body,
    where all but a negligible part of its light is)."""
    if abs(bend) < 1e-3:
        return img
    cx, cy = scene.pixel(x, y)
    half = int(3.5 * size_px) + 2
    x0, x1 = max(int(cx) - half, 0), min(int(cx) + half + 1, scene.n)
    y0, y1 = max(int(cy) - half, 0), min(int(cy) + half + 1, scene.n)
    if x0 >= x1 or y0 >= y1:
        return img
    rows, cols = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    c, s = math.cos(pa), math.sin(pa)
    u = (cols - cx) * c + (rows - cy) * s
    dv = (bend * q / size_px) * u * u
    out = img.copy()
    out[y0:y1, x0:x1] = scipy.ndimage.map_coordinates(img, [rows + dv * c, cols - dv * s], order=1,
                                                      mode="constant", cval=0.0, prefilter=False)
    return out
