"""An embedded synthetic galaxy survey in the style of Galaxy Zoo 2, so the whole pipeline runs
on a fresh machine with no downloads.

Every object is drawn from a *truth*: a class among ``catalogs.labels.CLASSES`` (spiral,
elliptical, edge-on, merger, ambiguous), a sub-kind and a set of features (number of arms,
winding, bar, bulge prominence, roundness, ring, dust lane, odd feature, how visible all of it
is). From the truth come three things, each from its own random stream so that they do not
disturb each other:

* an image: a ``size``×``size`` RGB JPEG like GZ2's SDSS *gri* cutouts (black sky, the galaxy
  centred and scaled to its Petrosian radius: the frame spans ~8.5 R90, as in GZ2);
* a footprint mask: 8-bit PNG, 255 where the noiseless, PSF-convolved image of the target alone
  (no neighbours, no noise) is brighter than ~2 sky sigma;
* simulated volunteer votes turned into per-question fractions for the 37 GZ2 answers, written
  under the Hart et al. (2016) ``..._debiased`` names of ``GZ2_TREE``; the catalog ``label``
  comes from those fractions through ``catalogs.labels.derive_labels``, exactly as for real
  GZ2 data.

Rendering model
---------------
GalSim draws every light profile, each achromatic component once, on the internal pixel grid:

* Sérsic bulges and ellipticals: ``galsim.Sersic`` sheared to their axis ratio and position
  angle (edge-on bulges too; a boxy/peanut bulge is a Sérsic core plus two crossed, flattened
  Sérsics);
* disks: ``galsim.InclinedExponential`` (sech² vertical profile, scale height 0.12 h) at the
  inclination that gives the sampled axis ratio; edge-ons are a thin sech² disk plus a fainter,
  thicker one, so they come out physically thin with a real vertical profile;
* merger bodies, their off-centre plumes and envelopes, irregular bodies and background
  galaxies: ``galsim.Exponential`` and ``galsim.Sersic``; HII knots, star-forming clumps and
  merger knots: ``galsim.Gaussian`` on small stamps;
* the PSF (``galsim.Kolmogorov``, FWHM 1.2-1.5") and the stars, which are the PSF itself drawn at
  their sub-pixel positions.

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
the tidal bending of merger bodies (a bilinear resampling of their GalSim images). Per-component
SEDs weight the achromatic images into (g, r, i); the scene is convolved with the GalSim PSF
image in one FFT per band (plus one for the target alone, which gives the mask), cheaper than a
``galsim.Convolve`` per component and the only way to put the dust in front of the PSF. Sky
noise is Gaussian from the object's numpy stream (``galsim.GaussianNoise`` is identical in law
but costs ~12 ms a frame, a third of an object's rendering time). Frames larger than 256 px are
rendered at half resolution and upsampled at the end, which also gives the sky noise the slight
correlation of SDSS's resampled cutouts.

Colour model
------------
Each component carries an SED, its flux in (g, r, i) relative to r: old populations (bulges,
ellipticals, bars) are red, g:r:i ≈ 0.50:1:1.40 (g-r ≈ 0.75, r-i ≈ 0.35); disks are
intermediate, ≈ 0.70:1:1.20; young populations (arms, knots, irregular clumps, tidal tails) are
blue, ≈ 0.95:1:0.95; stars range from blue to red. Each object's colours get a small common
shift (redshift/reddening) and per-component jitter. Dust transmits exp(-τ·(1.30, 1.00, 0.75)) in
(g, r, i). Sky noise is Gaussian, σ = 1 per band and internal pixel (all brightnesses are in
units of it), so a brightness is also a signal-to-noise. The three bands map to RGB as i→R,
r→G, g→B with weights (1.00, 1.15, 1.55) and a Lupton et al. (2004) asinh stretch on their mean
intensity, with colour-preserving saturation: bulges and ellipticals come out yellow-orange,
disks whitish, arms and knots blue, the sky black with a faint coloured grain.

Vote model
----------
For every question the object has a *truth* answer distribution (what an attentive volunteer
who sees the feature would answer) and a *confused* one (what volunteers answer when they
cannot see it). They are blended with a weight equal to the visibility of the feature the
question asks about (arms for Q4/Q10/Q11, the bar for Q3, the odd feature for Q6/Q8, the
object's overall visibility otherwise; visibility falls with low signal-to-noise, a PSF large
against the galaxy and high inclination). The blend is jittered per object with a Dirichlet
draw whose concentration grows with visibility (so two similar objects do not get identical
fractions). Then 30-50 volunteers walk the decision tree: everybody answers Q1; "features or
disk" leads to Q2; Q2 "yes" to Q9, "no" to Q3, Q4 and Q5; Q4 "spiral" to Q10 and Q11; "smooth"
to Q7; everybody who did not answer "star or artifact" (which ends a GZ2 classification)
answers Q6 and Q6 "yes" leads to Q8. Each volunteer is careless with a personal probability of
up to 8% per question and then answers uniformly at random. Fractions are per question among
the volunteers who reached it, summing to 1; questions nobody reached are all 0 (as in Hart16).
The truth distributions are chosen so that the 0.6-threshold rule of ``catalogs.labels`` gives
back the truth class for the large majority of objects: a spiral gets a Q4 "spiral" fraction of
~0.8-1, an elliptical a Q1 "smooth" fraction of ~0.8-1, an edge-on a Q2 "yes" fraction of
~0.85-1, a merger a Q6 "yes" and then Q8 "merger" fraction of ~0.7-0.9. "Ambiguous" objects
are lenticular-like disks without arms (votes split between smooth and features, Q4 "no
spiral"), clumpy irregulars (Q8 "irregular") and faint, poorly resolved objects whose votes split
on every question. Some objects end up with a label other than their truth, as in real data.

Determinism: each object's random streams come from ``numpy.random.SeedSequence([seed,
index])``; nothing depends on the worker count or the order in which workers finish.
"""

from __future__ import annotations

import io
import math
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import scipy.fft
import scipy.ndimage
from PIL import Image

from catalogs.labels import AMBIGUOUS, CLASSES, derive_labels
from catalogs.tree import GZ2_TREE

# ----------------------------------------------------------------------------------------------
# Survey composition

# Class proportions. "gz2" is roughly what the 0.6-threshold rule of catalogs.labels gives on
# the full GZ2 main sample: ambiguous is the largest group, mergers are rare.
MIXES: dict[str, dict[str, float]] = {
    "gz2": {"spiral": 0.30, "elliptical": 0.25, "edge-on": 0.08, "merger": 0.03, AMBIGUOUS: 0.34},
    "balanced": {c: 1.0 / len(CLASSES) for c in CLASSES},
}

# What an "ambiguous" truth object is, and how often.
_AMBIGUOUS_KINDS = {"lenticular": 0.35, "irregular": 0.30, "faint": 0.35}

_JPEG_QUALITY = 90
_MAX_DIRECT_SIZE = 256  # larger frames are rendered at half resolution, then upsampled
_RA_RANGE = (150.0, 160.0)  # the survey patch, degrees
_DEC_RANGE = (0.0, 10.0)

# ----------------------------------------------------------------------------------------------
# Colours (flux in g, r, i relative to r) and the JPEG stretch

_SED_OLD = np.array([0.50, 1.0, 1.40])
_SED_DISK = np.array([0.70, 1.0, 1.20])
_SED_YOUNG = np.array([0.95, 1.0, 0.95])
_DUST_TAU = np.array([1.30, 1.00, 0.75])  # extinction per band relative to r
_RGB_WEIGHTS = np.array([1.00, 1.15, 1.55])  # applied to (i, r, g) → (R, G, B)
_STRETCH_SOFT = 2.5  # asinh softening, in sky sigma: noise shows as a faint grain
_STRETCH_MAX = 400.0  # mean intensity that maps to full scale

# Fractions of a frame (all geometry is sampled in frame units, so an object looks the same at
# any size). GZ2 cutouts are 0.02·R90 arcsec/pixel on 424 px, i.e. the frame spans 8.48 R90.
_FRAME_PER_R90 = 8.48
# Our profiles reach R90 at a lower surface brightness than SDSS's Petrosian R90; making them a bit
# larger gives GZ2's look (the galaxy spans about a third to a half of the frame).
_R90_BOOST = 1.6
# Intrinsic thickness of disks (scale height over scale length, edge-on axis ratio).
_DISK_Q0 = 0.12


# ----------------------------------------------------------------------------------------------
# Random streams


def _object_rngs(seed: int, index: int) -> tuple[np.random.Generator, ...]:
    """Independent streams for an object's truth, its image and its votes."""
    children = np.random.SeedSequence([seed, index]).spawn(3)
    return tuple(np.random.default_rng(c) for c in children)


def _assign_classes(n: int, seed: int, mix: str) -> list[str]:
    """Truth class per index. ``balanced`` is exact (index % 5, then a seeded shuffle);
    ``gz2`` draws each object's class from its own stream, so object i does not depend on n."""
    if mix == "balanced":
        classes = np.array([CLASSES[i % len(CLASSES)] for i in range(n)], dtype=object)
        np.random.default_rng(np.random.SeedSequence([seed, 0xBA1A])).shuffle(classes)
        return list(classes)
    names = list(MIXES[mix])
    p = np.array([MIXES[mix][c] for c in names])
    p = p / p.sum()
    out = []
    for i in range(n):
        rng = np.random.default_rng(np.random.SeedSequence([seed, i, 0xC1A5]))
        out.append(names[int(rng.choice(len(names), p=p))])
    return out


# ----------------------------------------------------------------------------------------------
# Truth: sampling an object's class, features and rendering parameters


def _loguniform(rng, lo, hi):
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _sed(rng, base, shift=0.0):
    """A component SED with per-component jitter and the object's common colour shift (a
    redder object has less g and more i)."""
    jitter = rng.normal(0.0, 0.04, 3)
    return base * np.exp(np.array([-1.0, 0.0, 0.6]) * shift + jitter * np.array([1.0, 0.0, 1.0]))


def _common(rng, vis: float) -> dict:
    """Parameters every object shares: size, position, PSF, brightness, colour shift."""
    r90 = rng.uniform(0.85, 1.25) * _R90_BOOST / _FRAME_PER_R90  # GZ2 scales cutouts to R90
    # Small (in arcsec) galaxies are the faint ones: their PSF is large against them.
    r90_arcsec = rng.uniform(7.0, 13.0) + 14.0 * vis * rng.uniform(0.5, 1.0)
    fwhm_arcsec = rng.uniform(1.2, 1.5)
    return {
        "r90": r90,
        "center": rng.normal(0.0, 0.006, 2).tolist(),
        "pa": float(rng.uniform(0.0, math.pi)),
        "psf_fwhm": fwhm_arcsec / (_FRAME_PER_R90 * r90_arcsec),  # in frame units
        "sb": 5.0 * 14.0**vis * rng.uniform(0.8, 1.2),  # disk/central brightness, sky sigma
        "shift": float(rng.normal(0.0, 0.08)),
    }


def _bulge_class(bt: float) -> str:
    if bt < 0.04:
        return "no_bulge"
    if bt < 0.15:
        return "just_noticeable"
    if bt < 0.40:
        return "obvious"
    return "dominant"


def _features(**kw) -> dict:
    base = {
        "arms": 0, "winding": None, "bar": False, "bulge": "no_bulge", "bulge_shape": "no_bulge",
        "roundness": "in_between", "ring": False, "dust_lane": False, "odd": None, "vis": 1.0,
        "arm_vis": 0.0, "bar_vis": 0.0, "odd_vis": 1.0, "q": 1.0, "neighbours": 0,
    }
    base.update(kw)
    return base


def _sample_disk_params(rng, r90, arms=True, bar_prob=0.3, ring_prob=0.12, bt_range=(0.0, 0.5),
                        max_incl=65.0):
    """A bulge + disk (+ arms, bar, ring) galaxy in frame units."""
    h = r90 / 3.3  # an exponential disk has R90 ≈ 3.9 h; the bulge makes R90 a bit smaller
    cos_i = rng.uniform(math.cos(math.radians(max_incl)), 1.0)
    q = math.sqrt(cos_i**2 + _DISK_Q0**2 * (1.0 - cos_i**2))
    bt = float(rng.uniform(*bt_range))
    p = {
        "h": h, "q": q, "bt": bt,
        "bulge_re": h * rng.uniform(0.25, 0.45), "bulge_n": float(rng.uniform(1.5, 4.0)),
        "bulge_q": max(q, rng.uniform(0.75, 1.0)),
        "arms": None, "bar": None, "ring": None,
    }
    if rng.random() < bar_prob:
        p["bar"] = {"length": h * rng.uniform(0.9, 1.6), "axis_ratio": rng.uniform(0.22, 0.35),
                    "angle": float(rng.uniform(0, math.pi)), "strength": rng.uniform(0.5, 1.0)}
    if arms:
        m = int(rng.choice([1, 2, 3, 4, 5], p=[0.06, 0.50, 0.17, 0.14, 0.13]))
        if m == 5:
            m = int(rng.integers(5, 7))
        winding = str(rng.choice(["tight", "medium", "loose"], p=[0.3, 0.4, 0.3]))
        pitch = {"tight": (8.0, 13.0), "medium": (15.0, 22.0), "loose": (26.0, 36.0)}[winding]
        start = max(p["bulge_re"] * 1.6, 0.5 * h)
        if p["bar"] is not None:
            start = p["bar"]["length"]
        p["arms"] = {"m": m, "winding": winding, "pitch": float(rng.uniform(*pitch)),
                     "amp": float(rng.uniform(0.55, 0.95)), "start": start,
                     "phase": (p["bar"]["angle"] if p["bar"] else float(rng.uniform(0, 2 * math.pi))),
                     "sharp": float(rng.uniform(2.5, 4.5) if m <= 3 else rng.uniform(1.8, 3.0)),
                     "knots": int(rng.integers(4, 16))}
    if rng.random() < ring_prob:
        radius = p["bar"]["length"] * 1.05 if p["bar"] and rng.random() < 0.5 else h * rng.uniform(2.0, 3.0)
        p["ring"] = {"radius": radius, "width": h * rng.uniform(0.12, 0.25),
                     "strength": rng.uniform(0.5, 1.0)}
    return p


def _sample_spiral(rng) -> dict:
    vis = float(rng.uniform(0.6, 1.0))
    c = _common(rng, vis)
    d = _sample_disk_params(rng, c["r90"], bt_range=(0.0, 0.45))
    a = d["arms"]
    incl_factor = min(1.0, d["q"] / 0.5)  # arms fade from view above ~60°
    arm_vis = float(np.clip(vis * (0.55 + 0.5 * a["amp"]) * incl_factor, 0.0, 1.0))
    feats = _features(
        arms=a["m"], winding=a["winding"], bar=d["bar"] is not None, bulge=_bulge_class(d["bt"]),
        ring=d["ring"] is not None, odd="ring" if d["ring"] else None, vis=vis, arm_vis=arm_vis,
        bar_vis=vis * (d["bar"]["strength"] if d["bar"] else 0.0), q=d["q"],
    )
    return {"class": "spiral", "kind": "spiral", **feats, "render": {**c, "disk": d}}


def _sample_elliptical(rng, vis=None) -> dict:
    vis = float(rng.uniform(0.6, 1.0)) if vis is None else vis
    c = _common(rng, vis)
    roundness = str(rng.choice(["completely_round", "in_between", "cigar_shaped"], p=[0.4, 0.45, 0.15]))
    q = float(rng.uniform(*{"completely_round": (0.85, 1.0), "in_between": (0.5, 0.8),
                            "cigar_shaped": (0.25, 0.42)}[roundness]))
    ell = {"re": c["r90"] * rng.uniform(0.35, 0.5), "n": float(rng.uniform(2.5, 5.0)), "q": q}
    feats = _features(roundness=roundness, vis=vis, q=q, bulge="dominant")
    return {"class": "elliptical", "kind": "elliptical", **feats, "render": {**c, "ellipse": ell}}


def _sample_edge_on(rng) -> dict:
    vis = float(rng.uniform(0.65, 1.0))
    c = _common(rng, vis)
    shape = str(rng.choice(["rounded", "boxy", "no_bulge"], p=[0.5, 0.15, 0.35]))
    h = c["r90"] / 2.9  # R90 is measured along the long axis: edge-ons span much of the frame
    incl = math.radians(rng.uniform(85.0, 90.0))
    z0 = h * rng.uniform(0.16, 0.26)  # sech² scale height: thin, but thick enough to show a lane
    bt = {"rounded": rng.uniform(0.15, 0.4), "boxy": rng.uniform(0.15, 0.35), "no_bulge": 0.0}[shape]
    dust = rng.random() < 0.75
    q = z0 / h + math.cos(incl)  # apparent axis ratio, for the votes
    e = {"h": h, "z0": z0, "tilt": math.cos(incl), "bt": float(bt), "bulge_shape": shape,
         "bulge_re": h * rng.uniform(0.3, 0.5), "dust": None}
    if dust:
        # The lane sits a little off the midplane when the disk is not exactly edge-on.
        e["dust"] = {"tau": float(rng.uniform(3.0, 6.0)), "width": z0 * rng.uniform(0.45, 0.7),
                     "offset": h * math.cos(incl) * rng.uniform(0.2, 0.6) * rng.choice([-1.0, 1.0])}
    feats = _features(bulge_shape=shape, dust_lane=dust, odd="dust_lane" if dust else None,
                      vis=vis, q=q, bulge=_bulge_class(bt), odd_vis=0.8 * vis)
    return {"class": "edge-on", "kind": "edge-on", **feats, "render": {**c, "edge": e}}


def _sample_merger(rng) -> dict:
    vis = float(rng.uniform(0.8, 1.0))
    c = _common(rng, vis)
    stage = str(rng.choice(["pair", "late", "triple"], p=[0.6, 0.25, 0.15]))
    nbody = {"pair": 2, "late": 2, "triple": 3}[stage]
    r90 = c["r90"]
    sep = r90 * (rng.uniform(0.3, 0.6) if stage == "late" else rng.uniform(0.7, 1.4))
    axis = float(rng.uniform(0, 2 * math.pi))
    bodies = []
    for k in range(nbody):
        ang = axis + 2 * math.pi * k / nbody + rng.normal(0, 0.3)
        rad = sep / 2 if nbody == 2 else sep / math.sqrt(3)
        size = r90 * rng.uniform(0.45, 0.8) * (0.6 if stage == "late" else 1.0)
        pitch = float(rng.uniform(30, 50))
        tail = None
        if k == 0 or rng.random() < 0.7:  # every system shows at least one tidal tail
            # a tail leaves the far side of the body (away from the partner) and reaches ~3-5 sizes
            tail = {"angle": ang + rng.normal(0, 0.4), "sense": float(rng.choice([-1.0, 1.0])),
                    "length": float(rng.uniform(0.7, 1.0) * math.log(rng.uniform(4.0, 7.0)) / math.tan(math.radians(pitch))),
                    "pitch": pitch, "strength": float(rng.uniform(0.25, 0.6))}
        bodies.append({
            "x": rad * math.cos(ang), "y": rad * math.sin(ang),
            "size": size, "pa": float(rng.uniform(0, math.pi)), "q": float(rng.uniform(0.45, 0.95)),
            "type": str(rng.choice(["disk", "ell"], p=[0.65, 0.35])),
            "flux": float(rng.uniform(0.4, 1.0)), "bend": float(rng.uniform(-0.6, 0.6)),
            # outer light pulled away from the partner: lopsided, disturbed bodies
            "plume": {"dx": 0.4 * size * math.cos(ang), "dy": 0.4 * size * math.sin(ang),
                      "strength": float(rng.uniform(0.2, 0.5))},
            "tail": tail, "knots": int(rng.integers(0, 7)),
        })
    m = {"stage": stage, "bodies": bodies, "envelope": r90 * 0.4 if stage == "late" else 0.0}
    feats = _features(odd="merger", vis=vis, odd_vis=0.85 + 0.15 * vis)
    return {"class": "merger", "kind": "merger", **feats, "render": {**c, "merger": m}}


def _sample_lenticular(rng) -> dict:
    vis = float(rng.uniform(0.6, 1.0))
    c = _common(rng, vis)
    d = _sample_disk_params(rng, c["r90"], arms=False, bar_prob=0.25, ring_prob=0.2,
                            bt_range=(0.25, 0.6), max_incl=75.0)
    feats = _features(bar=d["bar"] is not None, bulge=_bulge_class(d["bt"]), ring=d["ring"] is not None,
                      odd="ring" if d["ring"] else None, vis=vis, q=d["q"],
                      bar_vis=vis * (d["bar"]["strength"] if d["bar"] else 0.0),
                      roundness="completely_round" if d["q"] > 0.8 else "in_between")
    return {"class": AMBIGUOUS, "kind": "lenticular", **feats, "render": {**c, "disk": d, "old_disk": True}}


def _sample_irregular(rng) -> dict:
    vis = float(rng.uniform(0.5, 0.9))
    c = _common(rng, vis)
    irr = {"h": c["r90"] / rng.uniform(2.2, 3.0), "q": float(rng.uniform(0.4, 0.95)),
           "offset": rng.normal(0, 0.015, 2).tolist(), "clumps": int(rng.integers(6, 20)),
           "clumpiness": float(rng.uniform(0.6, 1.1))}
    feats = _features(odd="irregular", vis=vis, q=irr["q"], odd_vis=0.7 * vis)
    return {"class": AMBIGUOUS, "kind": "irregular", **feats, "render": {**c, "irregular": irr}}


def _sample_faint(rng) -> dict:
    """A poorly resolved, low signal-to-noise object of any underlying shape: volunteers split."""
    vis = float(rng.uniform(0.0, 0.3))
    under = str(rng.choice(["spiral", "elliptical", "lenticular"]))
    base = {"spiral": _sample_spiral, "elliptical": _sample_elliptical, "lenticular": _sample_lenticular}[under](rng)
    # Faint and small on the sky: GZ2 blows the cutout up to R90 anyway, so the PSF is large
    # against the galaxy and the surface brightness is low.
    base["render"]["psf_fwhm"] = rng.uniform(1.2, 1.5) / (_FRAME_PER_R90 * rng.uniform(3.5, 7.0))
    base["render"]["sb"] = 1.5 * 3.0**vis * rng.uniform(0.8, 1.2) * (1.6 if under != "elliptical" else 1.0)
    base.update({"class": AMBIGUOUS, "kind": "faint", "underlying": under, "vis": vis,
                 "arm_vis": base["arm_vis"] * vis, "bar_vis": base["bar_vis"] * vis, "odd_vis": vis})
    return base


def _sample_neighbours(rng, truth: dict) -> list[dict]:
    """Foreground stars and small background galaxies, mostly away from the target."""
    out = []
    for _ in range(int(rng.poisson(1.5))):
        out.append({"type": "star", "pos": _away_from_centre(rng), "flux": _loguniform(rng, 30, 6000),
                    "sed": float(rng.uniform(-0.3, 0.6))})
    for _ in range(int(rng.poisson(2.0))):
        out.append({"type": "galaxy", "pos": _away_from_centre(rng), "flux": _loguniform(rng, 30, 800),
                    "size": _loguniform(rng, 0.004, 0.015), "q": float(rng.uniform(0.3, 1.0)),
                    "pa": float(rng.uniform(0, math.pi)), "sed": float(rng.uniform(0.0, 0.5))})
    truth["neighbours"] = sum(1 for o in out if o["type"] == "galaxy")
    return out


def _away_from_centre(rng) -> list[float]:
    while True:
        p = rng.uniform(-0.48, 0.48, 2)
        if np.hypot(*p) > 0.22:
            return p.tolist()


def sample_truth(cls: str, rng: np.random.Generator) -> dict:
    """Draw an object of truth class ``cls``: its features (for the votes) and, under
    ``"render"``, everything the image needs."""
    if cls == "spiral":
        truth = _sample_spiral(rng)
    elif cls == "elliptical":
        truth = _sample_elliptical(rng)
    elif cls == "edge-on":
        truth = _sample_edge_on(rng)
    elif cls == "merger":
        truth = _sample_merger(rng)
    elif cls == AMBIGUOUS:
        kinds = list(_AMBIGUOUS_KINDS)
        kind = kinds[int(rng.choice(len(kinds), p=list(_AMBIGUOUS_KINDS.values())))]
        truth = {"lenticular": _sample_lenticular, "irregular": _sample_irregular,
                 "faint": _sample_faint}[kind](rng)
    else:
        raise ValueError(f"unknown truth class {cls!r}; expected one of {list(CLASSES)}")
    truth["render"]["neighbours"] = _sample_neighbours(rng, truth)
    return truth


# ----------------------------------------------------------------------------------------------
# The scene. GalSim draws every light profile onto the pixel grid; numpy adds the structure that
# GalSim has no profile for (arm modulation, bars, rings, clumpy texture, dust, tidal arcs).


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


# GalSim profiles, in pixel units. Brightness conventions follow the rest of the module: a disk's
# ``sb`` is its (face-on equivalent) central surface brightness, a Sérsic's ``ie`` its surface
# brightness at the effective radius, both per pixel in sky sigma.


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


# ----------------------------------------------------------------------------------------------
# Galaxy drawers: combine components for each kind of object


def _draw_disk_galaxy(scene, rng, c, d, old_disk=False):
    """Bulge (Sérsic) + inclined exponential disk drawn by GalSim; the arms modulate the drawn
    disk, bar and ring are added as numpy fields."""
    pa, sb = c["pa"], c["sb"]
    cx, cy = c["center"]
    h, q = scene.px(d["h"]), d["q"]
    disk = scene.draw(_inclined_disk_profile(h, q, pa, 1.0), cx, cy)  # ≈ exp(-r/h) in the disk plane
    u, v = scene.frame(cx, cy, pa, q)
    r = np.sqrt(u * u + v * v)
    disk_sed = _sed(rng, _SED_OLD * 0.5 + _SED_DISK * 0.5 if old_disk else _SED_DISK, scene.shift)
    arms = d.get("arms")
    # Arms take light from the smooth disk (the interarm is fainter), then add young light.
    arm_amp = arms["amp"] if arms else 0.0
    scene.add(disk, sb * (1.0 - 0.55 * arm_amp), disk_sed)
    disk_flux = 2 * math.pi * h * h * q * sb
    if arms:
        a = dict(arms, start=scene.px(arms["start"]))
        tex = _texture(rng, scene.n, 14, 0.45)
        scene.add(disk * _arm_wave(r, np.arctan2(v, u), h, a) * tex, sb * 2.2 * arm_amp,
                  _sed(rng, _SED_YOUNG, scene.shift))
        _arm_knots(scene, rng, {"x": cx, "y": cy, "pa": pa, "q": q}, a, h, sb * 1.2 * arm_amp,
                   _sed(rng, _SED_YOUNG * np.array([1.1, 1.0, 0.9]), scene.shift))
    if d.get("bar"):
        b = dict(d["bar"], length=scene.px(d["bar"]["length"]))
        scene.add(_bar(u, v, b), sb * 1.3 * b["strength"], _sed(rng, _SED_OLD, scene.shift))
    if d.get("ring"):
        rg = dict(d["ring"], radius=scene.px(d["ring"]["radius"]), width=scene.px(d["ring"]["width"]))
        ring_sed = _SED_DISK if old_disk else _SED_YOUNG
        scene.add(_ring(r, rg) * np.exp(-r / (3 * h)), sb * 0.9 * rg["strength"], _sed(rng, ring_sed, scene.shift))
    if d["bt"] > 0:
        flux = d["bt"] / (1.0 - d["bt"]) * disk_flux
        bulge = _sersic_profile(d["bulge_n"], scene.px(d["bulge_re"]), d["bulge_q"], pa, flux=flux)
        scene.add(scene.draw(bulge, cx, cy, centre=3), 1.0, _sed(rng, _SED_OLD, scene.shift))


def _draw_elliptical(scene, rng, c, e):
    # sb is the brightness at ~re/3: a bright core that saturates as in SDSS JPEGs
    prof = _sersic_profile(e["n"], scene.px(e["re"]), e["q"], c["pa"], ie=c["sb"] * 0.35)
    scene.add(scene.draw(prof, *c["center"], centre=3), 1.0, _sed(rng, _SED_OLD, scene.shift))


def _draw_edge_on(scene, rng, c, e):
    """A thin sech² disk plus a fainter thick one (``galsim.InclinedExponential`` at 85-90°), a
    Sérsic bulge (round, or boxy: a core plus two crossed flattened components, a peanut), then
    the dust lane's transmission over all of it (off the midplane when the disk is tilted)."""
    gs = _galsim()
    h, z0 = scene.px(e["h"]), scene.px(e["z0"])
    cx, cy = c["center"]
    pa = c["pa"]
    incl = math.acos(min(e["tilt"], 1.0)) * gs.radians
    s0 = 0.9 * c["sb"]  # central surface brightness of the thin disk; edge-on it is F/(2π h z0)
    thin = gs.InclinedExponential(incl, scale_radius=h, scale_height=z0, flux=s0 * 2 * math.pi * h * z0,
                                  gsparams=_gsparams())
    thick = gs.InclinedExponential(incl, scale_radius=1.1 * h, scale_height=0.3 * h,
                                   flux=0.5 * s0 * 2 * math.pi * 1.1 * h * 0.3 * h, gsparams=_gsparams())
    disk_flux = thin.flux + thick.flux
    disk = scene.draw(gs.Add([thin, thick]).rotate(pa * gs.radians), cx, cy)
    layer = np.asarray(_sed(rng, _SED_DISK, scene.shift), np.float32)[:, None, None] * disk[None]
    if e["bt"] > 0:
        re = scene.px(e["bulge_re"])
        if e["bulge_shape"] == "boxy":
            bulge = gs.Add([_sersic_profile(2.0, re, 0.75, pa, flux=0.4),
                            _sersic_profile(1.0, 1.15 * re, 0.35, pa + 0.5, flux=0.3),
                            _sersic_profile(1.0, 1.15 * re, 0.35, pa - 0.5, flux=0.3)])
        else:
            bulge = _sersic_profile(2.0, re, 0.8, pa, flux=1.0)
        bulge = bulge.withFlux(e["bt"] / (1 - e["bt"]) * disk_flux)
        layer += (np.asarray(_sed(rng, _SED_OLD, scene.shift), np.float32)[:, None, None]
                  * scene.draw(bulge, cx, cy, centre=3)[None])
    if e["dust"]:
        u, z = scene.frame(cx, cy, pa, 1.0)
        d = dict(e["dust"], width=scene.px(e["dust"]["width"]), offset=scene.px(e["dust"]["offset"]))
        layer *= _dust_transmission(u, z, d, h)
    scene.target += layer


def _draw_merger(scene, rng, c, m):
    """Bodies (exponential disks with Sérsic bulges, or Sérsic ellipticals) and their plumes drawn
    by GalSim, then bent; tidal tails as numpy arcs; knots as GalSim Gaussians."""
    young = _sed(rng, _SED_YOUNG, scene.shift)
    for b in m["bodies"]:
        size = scene.px(b["size"])
        x, y = c["center"][0] + b["x"], c["center"][1] + b["y"]
        amp = c["sb"] * b["flux"]
        if b["type"] == "disk":
            parts = [(_flat_exp_profile(size / 3.0, b["q"], b["pa"], amp * 0.8), 0, _SED_DISK),
                     (_sersic_profile(2.5, size / 8.0, b["q"], b["pa"], ie=amp * 0.5), 3, _SED_OLD)]
        else:
            parts = [(_sersic_profile(3.5, size / 2.5, b["q"], b["pa"], ie=amp * 0.3), 3, _SED_OLD)]
        for prof, centre, sed in parts:
            img = _bend(scene, scene.draw(prof, x, y, centre=centre), x, y, b["pa"], b["q"], b["bend"], size)
            scene.add(img, 1.0, _sed(rng, sed, scene.shift))
        pl = b["plume"]
        plume = _flat_exp_profile(size / 2.5, min(1.0, b["q"] + 0.2), b["pa"], amp * pl["strength"])
        scene.add(scene.draw(plume, x + pl["dx"], y + pl["dy"]), 1.0, _sed(rng, _SED_DISK, scene.shift))
        if b["tail"]:
            tu, tv = scene.frame(x, y, 0.0, 1.0)
            scene.add(_tidal_tail(tu, tv, b["tail"], size), amp * b["tail"]["strength"], young)
        for _ in range(b["knots"]):
            off = rng.normal(0, 0.35, 2) * b["size"]
            _knot(scene, x + off[0], y + off[1], rng.uniform(1.0, 2.0) * max(1.0, scene.n / 212),
                  amp * rng.uniform(0.2, 0.6), young)
    if m["envelope"]:
        env = _sersic_profile(1.5, scene.px(m["envelope"]), 0.7, c["pa"], ie=c["sb"] * 0.12)
        scene.add(scene.draw(env, *c["center"]), 1.0, _sed(rng, _SED_DISK, scene.shift))


def _draw_irregular(scene, rng, c, irr):
    """A GalSim exponential body made clumpy by a numpy log-normal texture, plus GalSim Gaussian
    star-forming clumps."""
    h = scene.px(irr["h"])
    cx, cy = c["center"][0] + irr["offset"][0], c["center"][1] + irr["offset"][1]
    body = scene.draw(_flat_exp_profile(h, irr["q"], c["pa"], 1.0), cx, cy)
    body = body * _texture(rng, scene.n, 10, irr["clumpiness"])
    scene.add(body, c["sb"] * 0.6, _sed(rng, _SED_YOUNG * 0.4 + _SED_DISK * 0.6, scene.shift))
    cs, sn = math.cos(c["pa"]), math.sin(c["pa"])
    for _ in range(irr["clumps"]):
        du, dv = rng.normal(0, 1.3, 2) * irr["h"]
        dv *= irr["q"]
        _knot(scene, cx + du * cs - dv * sn, cy + du * sn + dv * cs,
              rng.uniform(1.0, 3.5) * max(1.0, scene.n / 212), c["sb"] * rng.uniform(0.2, 0.9),
              _sed(rng, _SED_YOUNG * 0.7 + _SED_DISK * 0.3, scene.shift))


def _draw_neighbours(scene, neighbours) -> list[dict]:
    """Small background galaxies: GalSim exponentials on pixel-integrated stamps. Returns the
    stars, which ``render_object`` draws as the PSF itself after the convolution."""
    gs = _galsim()
    stars = []
    for o in neighbours:
        if o["type"] == "star":
            stars.append(o)
            continue
        h = max(scene.px(o["size"]), 0.5)
        prof = gs.Exponential(scale_radius=h * math.sqrt(o["q"]), flux=o["flux"], gsparams=_gsparams())
        prof = prof.shear(q=o["q"], beta=o["pa"] * gs.radians)
        sed = _SED_DISK * np.exp(np.array([-1.0, 0.0, 0.6]) * o["sed"])
        scene.add_stamp(prof, *o["pos"], int(math.ceil(8 * h)) + 2, sed, sub=3, layer="others")
    return stars


# ----------------------------------------------------------------------------------------------
# PSF, noise and the colour composition


@lru_cache(maxsize=256)
def _psf_kernel(fwhm_px: float) -> np.ndarray:
    """A Kolmogorov PSF drawn by GalSim (pixel response included), normalised to 1."""
    galsim = _galsim()
    size = 2 * int(math.ceil(2.5 * fwhm_px)) + 5
    img = galsim.Kolmogorov(fwhm=fwhm_px).drawImage(nx=size, ny=size, scale=1.0).array
    return (img / img.sum()).astype(np.float32)


def _convolve(stack: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """FFT convolution of each image in ``stack`` (…, n, n) with ``kernel``, same size, no
    wrap-around."""
    n, k = stack.shape[-1], kernel.shape[0]
    m = scipy.fft.next_fast_len(n + k - 1, real=True)
    fk = scipy.fft.rfft2(kernel, s=(m, m))
    out = scipy.fft.irfft2(scipy.fft.rfft2(stack, s=(m, m)) * fk, s=(m, m))
    o = k // 2
    return out[..., o : o + n, o : o + n]


def _add_stars(bands: np.ndarray, scene: _Scene, stars: list[dict], fwhm_px: float) -> None:
    """Stars are point sources: GalSim draws the PSF itself, integrated over the pixel, at each
    star's sub-pixel position, after the scene's convolution."""
    psf = _galsim().Kolmogorov(fwhm=fwhm_px, gsparams=_gsparams())
    half = int(math.ceil(3.0 * fwhm_px)) + 3
    for o in stars:
        # 4×4 subsampled real-space drawing integrates over the pixel: a fraction of the cost
        # of method="auto" (a k-space convolution with the pixel), same image to ~2%
        s = scene.stamp(psf.withFlux(o["flux"]), *o["pos"], half, sub=4)
        if s is not None:
            sed = _SED_DISK * np.exp(np.array([-1.0, 0.0, 0.6]) * o["sed"])
            bands[(slice(None), *s[1])] += sed.astype(np.float32)[:, None, None] * s[0][None]


def _to_rgb(bands: np.ndarray) -> np.ndarray:
    """(g, r, i) images in sky-sigma units → uint8 RGB with a Lupton asinh stretch."""
    rgb = np.stack([bands[2], bands[1], bands[0]]) * _RGB_WEIGHTS[:, None, None].astype(np.float32)
    rgb = np.maximum(rgb, 0.0)
    mean = rgb.mean(axis=0)
    scale = np.arcsinh(mean / _STRETCH_SOFT) / (math.asinh(_STRETCH_MAX / _STRETCH_SOFT) * np.maximum(mean, 1e-6))
    rgb = rgb * scale[None]
    # colour-preserving saturation: scale all channels down together
    peak = np.maximum(rgb.max(axis=0), 1.0)
    rgb = rgb / peak[None]
    return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8).transpose(1, 2, 0)


def render_object(truth: dict, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Render one object: (size, size, 3) uint8 RGB image and (size, size) uint8 0/255 mask."""
    n = size if size <= _MAX_DIRECT_SIZE else (size + 1) // 2
    c = truth["render"]
    scene = _Scene(n, c["shift"])
    if "disk" in c:
        _draw_disk_galaxy(scene, rng, c, c["disk"], old_disk=c.get("old_disk", False))
    elif "ellipse" in c:
        _draw_elliptical(scene, rng, c, c["ellipse"])
    elif "edge" in c:
        _draw_edge_on(scene, rng, c, c["edge"])
    elif "merger" in c:
        _draw_merger(scene, rng, c, c["merger"])
    elif "irregular" in c:
        _draw_irregular(scene, rng, c, c["irregular"])
    stars = _draw_neighbours(scene, c["neighbours"])

    fwhm = round(max(c["psf_fwhm"] * n, 0.7), 2)
    # One batched FFT: the three bands of the whole scene, plus the target alone summed over
    # bands for the footprint (convolution is linear, so this is the target's own image).
    conv = _convolve(np.concatenate([scene.target + scene.others, scene.target.sum(axis=0)[None]]),
                     _psf_kernel(fwhm))
    # Footprint: target alone, noiseless, above ~2 sigma of the sky in the summed bands.
    mask = (conv[3] > 2.0 * math.sqrt(3.0)).astype(np.uint8) * 255
    bands = np.ascontiguousarray(conv[:3], dtype=np.float32)
    _add_stars(bands, scene, stars, fwhm)
    # Sky noise from numpy's generator: galsim.GaussianNoise gives the same thing at ~12 ms per
    # 3×212² frame (a third of an object's rendering time) against ~1 ms.
    bands += rng.standard_normal(bands.shape, dtype=np.float32)
    rgb = _to_rgb(bands)
    if n != size:
        rgb = np.asarray(Image.fromarray(rgb).resize((size, size), Image.BICUBIC))
        mask = np.asarray(Image.fromarray(mask).resize((size, size), Image.BILINEAR))
        mask = np.where(mask >= 128, 255, 0).astype(np.uint8)
    return rgb, mask


# ----------------------------------------------------------------------------------------------
# Volunteer votes


def _blend(truth_p, confused_p, w):
    p = w * np.asarray(truth_p, float) + (1.0 - w) * np.asarray(confused_p, float)
    return p / p.sum()


def _smear(n_answers: int, k0: int, sharpness: float) -> np.ndarray:
    """Mostly the true ordinal answer, some neighbours: confusion between adjacent answers."""
    p = np.exp(-sharpness * np.abs(np.arange(n_answers) - k0))
    return p / p.sum()


_BULGE = ["no_bulge", "just_noticeable", "obvious", "dominant"]
_ROUND = ["completely_round", "in_between", "cigar_shaped"]
_WIND = ["tight", "medium", "loose"]
_BSHAPE = ["rounded", "boxy", "no_bulge"]
_ODD = [a.slug for a in GZ2_TREE.question("t08").answers]  # ring … merger, dust_lane


def _ordered(slugs: list[str], p: dict[str, float]) -> np.ndarray:
    """A probability per answer slug → a vector in tree order."""
    return np.array([p[slug] for slug in slugs])


def _question_probs(t: dict) -> dict[str, np.ndarray]:
    """Per question, the answer distribution of this object's volunteers (before per-object
    jitter and per-volunteer carelessness)."""
    kind = t.get("kind", t.get("class", AMBIGUOUS))
    vis = float(t.get("vis", 1.0))
    arm_vis = float(t.get("arm_vis", 0.0))
    odd_vis = float(t.get("odd_vis", vis))
    q = float(t.get("q", 1.0))
    if kind == "faint":  # the underlying shape shows through only faintly
        kind_w, kind = 0.6 * vis, t.get("underlying", "elliptical")
    else:
        kind_w = 0.75 + 0.25 * vis
    cigar = t.get("roundness") == "cigar_shaped"

    q1 = {"elliptical": [0.86, 0.135, 0.005] if cigar else [0.97, 0.025, 0.005],
          "spiral": [0.12, 0.875, 0.005] if t.get("bulge") == "dominant" else [0.04, 0.955, 0.005],
          "edge-on": [0.10, 0.895, 0.005], "merger": [0.22, 0.77, 0.01],
          "lenticular": [0.38, 0.615, 0.005], "irregular": [0.12, 0.83, 0.05]}[kind]
    edge_yes = {"edge-on": 0.95, "elliptical": 0.6 if cigar else 0.05, "merger": 0.1,
                "irregular": 0.06}.get(kind, 0.03 + 0.5 * float(np.clip((0.45 - q) / 0.35, 0, 1)))
    # Few volunteers reach Q4 for smooth or edge-on objects, and the label rule checks spiral
    # first: those few must rarely say "spiral", or a handful of votes would make a spiral.
    spiral_yes = {"spiral": 0.97, "elliptical": 0.03, "edge-on": 0.08, "merger": 0.3,
                  "lenticular": 0.12, "irregular": 0.28}[kind]
    odd = t.get("odd")
    odd_yes = {None: 0.08 + 0.03 * min(int(t.get("neighbours", 0)), 3), "ring": 0.75, "dust_lane": 0.6,
               "merger": 0.95, "irregular": 0.85, "lens_or_arc": 0.5}.get(odd, 0.6)
    odd_truth = _ordered(_ODD, {
        None: {"disturbed": 0.2, "irregular": 0.15, "other": 0.45, "ring": 0.05, "lens_or_arc": 0.05,
               "merger": 0.05, "dust_lane": 0.05},
        "ring": {"ring": 0.85, "lens_or_arc": 0.05, "other": 0.04, "disturbed": 0.02, "irregular": 0.02,
                 "merger": 0.01, "dust_lane": 0.01},
        "dust_lane": {"dust_lane": 0.77, "other": 0.08, "lens_or_arc": 0.05, "disturbed": 0.05,
                      "ring": 0.02, "irregular": 0.02, "merger": 0.01},
        "merger": {"merger": 0.84, "disturbed": 0.09, "lens_or_arc": 0.02, "irregular": 0.02,
                   "ring": 0.01, "other": 0.01, "dust_lane": 0.01},
        "irregular": {"irregular": 0.60, "disturbed": 0.22, "other": 0.08, "merger": 0.05,
                      "ring": 0.02, "lens_or_arc": 0.02, "dust_lane": 0.01},
        "lens_or_arc": {"lens_or_arc": 0.6, "other": 0.15, "ring": 0.1, "disturbed": 0.05,
                        "irregular": 0.05, "dust_lane": 0.03, "merger": 0.02},
    }[odd])
    arms = int(t.get("arms", 0))
    if arms > 0:
        arms_truth = np.append(_smear(5, min(arms, 5) - 1, 1.8) * 0.92, 0.08)
    else:
        arms_truth = np.array([0.05, 0.2, 0.05, 0.03, 0.02, 0.65])
    winding = t.get("winding")
    wind_truth = _smear(3, _WIND.index(winding), 1.8) if winding else np.array([0.3, 0.45, 0.25])
    bar = bool(t.get("bar", False))

    return {
        "t01": _blend(q1, [0.40, 0.48, 0.12], kind_w),
        "t02": _blend([edge_yes, 1 - edge_yes], [0.3, 0.7], kind_w),
        "t03": _blend([0.9, 0.1] if bar else [0.04, 0.96], [0.25, 0.75],
                      float(t.get("bar_vis", 0.0)) if bar else kind_w),
        "t04": _blend([spiral_yes, 1 - spiral_yes], [0.35, 0.65], arm_vis if kind == "spiral" else kind_w),
        "t05": _blend(_smear(4, _BULGE.index(t.get("bulge", "no_bulge")), 1.6), [0.2, 0.35, 0.3, 0.15], kind_w),
        "t06": _blend([odd_yes, 1 - odd_yes], [0.2, 0.8], odd_vis),
        "t07": _blend(_smear(3, _ROUND.index(t.get("roundness", "in_between")), 2.0), [0.3, 0.5, 0.2], kind_w),
        "t08": _blend(odd_truth, _ordered(_ODD, {"ring": 0.08, "lens_or_arc": 0.08, "disturbed": 0.22,
                                                 "irregular": 0.2, "other": 0.3, "merger": 0.07,
                                                 "dust_lane": 0.05}), odd_vis),
        "t09": _blend(_smear(3, _BSHAPE.index(t.get("bulge_shape", "no_bulge")), 2.2), [0.45, 0.15, 0.4], kind_w),
        "t10": _blend(wind_truth, [0.3, 0.45, 0.25], arm_vis),
        "t11": _blend(arms_truth, [0.05, 0.25, 0.1, 0.05, 0.05, 0.5], arm_vis),
    }


def simulate_votes(truth: dict, rng: np.random.Generator | int) -> np.ndarray:
    """Simulated GZ2 volunteer votes for one object → the 37 per-question fractions, in
    ``GZ2_TREE`` order (the ``..._debiased`` columns). See the module docstring for the model.

    ``truth`` needs at least ``"class"`` (or ``"kind"``); the features it lacks take neutral
    defaults.
    """
    rng = np.random.default_rng(rng)
    probs = _question_probs(truth)
    vis = float(truth.get("vis", 1.0))
    kappa = 25.0 + 75.0 * vis  # how much objects alike get alike fractions
    for k, p in probs.items():
        probs[k] = rng.dirichlet(kappa * p + 1e-3)

    n_vol = int(rng.integers(30, 51))
    careless = rng.uniform(0.0, 0.08, n_vol)
    answers = {}  # question key → array of answer indices per volunteer (-1: not reached)

    def ask(key: str, reached: np.ndarray) -> np.ndarray:
        p = probs[key]
        picked = np.minimum(np.searchsorted(np.cumsum(p), rng.random(n_vol) * p.sum(), side="right"), len(p) - 1)
        random_pick = rng.integers(0, len(p), n_vol)
        out = np.where(rng.random(n_vol) < careless, random_pick, picked)
        out = np.where(reached, out, -1)
        answers[key] = out
        return out

    everyone = np.ones(n_vol, dtype=bool)
    a1 = ask("t01", everyone)
    a2 = ask("t02", a1 == 1)
    ask("t09", a2 == 0)
    not_edge = a2 == 1
    ask("t03", not_edge)
    a4 = ask("t04", not_edge)
    ask("t05", not_edge)
    ask("t10", a4 == 0)
    ask("t11", a4 == 0)
    ask("t07", a1 == 0)
    a6 = ask("t06", a1 != 2)  # "star or artifact" ends a GZ2 classification
    ask("t08", a6 == 0)

    out = np.zeros(len(GZ2_TREE), dtype=np.float64)
    for q, sl in GZ2_TREE.question_slices:
        a = answers[q.key]
        reached = a[a >= 0]
        if reached.size:
            out[sl] = np.bincount(reached, minlength=len(q.answers)) / reached.size
    return out


# ----------------------------------------------------------------------------------------------
# The survey


def _object_id(seed: int, index: int, width: int) -> str:
    return f"synth-{seed}-{index:0{width}d}"


def _make_object(job: tuple) -> dict:
    """Sample, render and write one object; return its catalog row (without the label)."""
    out_dir, seed, index, cls, size, width = job
    rng_truth, rng_image, rng_votes = _object_rngs(seed, index)
    truth = sample_truth(cls, rng_truth)
    ra = rng_truth.uniform(*_RA_RANGE)
    sin_dec = rng_truth.uniform(math.sin(math.radians(_DEC_RANGE[0])), math.sin(math.radians(_DEC_RANGE[1])))
    rgb, mask = render_object(truth, rng_image, size)
    fractions = simulate_votes(truth, rng_votes)

    oid = _object_id(seed, index, width)
    image_rel, mask_rel = f"images/{oid}.jpg", f"masks/{oid}.png"
    _write_bytes(Path(out_dir) / image_rel, _encode(rgb, "JPEG", quality=_JPEG_QUALITY))
    _write_bytes(Path(out_dir) / mask_rel, _encode(mask, "PNG"))
    return {"object_id": oid, "image_path": image_rel, "ra": float(ra),
            "dec": math.degrees(math.asin(sin_dec)), "fractions": fractions,
            "truth_class": truth["class"], "mask_path": mask_rel}


def _encode(array: np.ndarray, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt, **kw)
    return buf.getvalue()


def _write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)  # readers never see half a file


def _make_chunk(jobs: list[tuple]) -> list[dict]:
    return [_make_object(j) for j in jobs]


def _validate(n, seed, size, mix, workers) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 32:
        raise ValueError(f"size must be an integer >= 32 pixels, got {size!r}")
    if mix not in MIXES:
        raise ValueError(f"unknown mix {mix!r}; valid mixes: {', '.join(sorted(MIXES))}")
    if workers is not None and (not isinstance(workers, (int, np.integer)) or workers < 1):
        raise ValueError(f"workers must be an integer >= 1 or None, got {workers!r}")


def _schema() -> pa.Schema:
    fields = [pa.field("object_id", pa.string()), pa.field("image_path", pa.string()),
              pa.field("ra", pa.float64()), pa.field("dec", pa.float64())]
    fields += [pa.field(c, pa.float64()) for c in GZ2_TREE.debiased_columns]
    fields += [pa.field("label", pa.string()), pa.field("truth_class", pa.string()),
               pa.field("mask_path", pa.string())]
    return pa.schema(fields)


def render_survey(out_dir: Path, n: int, seed: int, size: int = 424, mix: str = "gz2",
                  workers: int | None = None,
                  progress: Callable[[int], None] | None = None) -> pa.Table:
    """Render a synthetic survey of ``n`` objects into ``out_dir`` and return its catalog.

    Writes ``out_dir/images/<object_id>.jpg`` (RGB, ``size``×``size``) and
    ``out_dir/masks/<object_id>.png`` (0/255 footprint of the target galaxy). The table has one
    row per object in index order: ``object_id``, ``image_path`` (relative to ``out_dir``),
    ``ra``, ``dec``, the 37 ``GZ2_TREE.debiased_columns``, ``label`` (``derive_labels`` on the
    simulated fractions), ``truth_class`` and ``mask_path``. The output depends only on
    ``(n, seed, size, mix)``, never on ``workers`` (default: all CPU cores). ``progress`` is
    called with the number of objects finished so far.

    With ``workers`` > 1 the objects are rendered in a ``forkserver`` process pool (safe when the
    caller already runs threads, as Prefect and TensorFlow do); like any ``multiprocessing``
    code, a script calling this must then guard its entry point with
    ``if __name__ == "__main__":``.
    """
    _validate(n, seed, size, mix, workers)
    n, seed, size = int(n), int(seed), int(size)
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "masks").mkdir(parents=True, exist_ok=True)

    classes = _assign_classes(n, seed, mix)
    width = max(6, len(str(n - 1)))
    jobs = [(str(out_dir), seed, i, classes[i], size, width) for i in range(n)]
    workers = min(int(workers or os.cpu_count() or 1), n)

    rows: list[dict | None] = [None] * n
    done = 0
    if workers == 1:
        for i, job in enumerate(jobs):
            rows[i] = _make_object(job)
            done += 1
            if progress:
                progress(done)
    else:
        # Small chunks keep both workers busy to the end and the progress bar moving.
        chunk = max(1, min(16, n // (workers * 4)))
        chunks = [jobs[i : i + chunk] for i in range(0, n, chunk)]
        # forkserver: safe even when the caller holds threads (Prefect, TensorFlow).
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["catalogs.synthetic", "galsim"])
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            for start, result in zip(range(0, n, chunk), pool.map(_make_chunk, chunks)):
                rows[start : start + len(result)] = result
                done += len(result)
                if progress:
                    progress(done)

    fractions = np.stack([r["fractions"] for r in rows])
    columns = {c: fractions[:, j] for j, c in enumerate(GZ2_TREE.debiased_columns)}
    labels = derive_labels(columns)
    data = {"object_id": [r["object_id"] for r in rows], "image_path": [r["image_path"] for r in rows],
            "ra": [r["ra"] for r in rows], "dec": [r["dec"] for r in rows], **columns,
            "label": [str(x) for x in labels], "truth_class": [r["truth_class"] for r in rows],
            "mask_path": [r["mask_path"] for r in rows]}
    return pa.table(data, schema=_schema())
