"""An object's *truth*: its class, sub-kind, features and everything its image needs.

The class is one of ``catalogs.labels.CLASSES`` (spiral, elliptical, edge-on, merger,
ambiguous); an "ambiguous" object is a lenticular-like disk without arms, a clumpy irregular or a
faint, poorly resolved object of any shape. The features (number of arms, winding, bar, bulge
prominence and shape, roundness, ring, dust lane, odd feature, background neighbours) are what
the volunteers vote on. The visibilities (``vis`` for the object, ``arm_vis``, ``bar_vis``,
``odd_vis`` for a feature) say how well they can see them: they fall with low signal-to-noise, a
PSF large against the galaxy and high inclination. Under ``"render"`` sits the geometry,
brightness and colour shift of every component, in frame units (fractions of the frame), so an
object looks the same at any image size.
"""

from __future__ import annotations

import math

import numpy as np

from catalogs.labels import AMBIGUOUS, CLASSES

# Class proportions. "gz2" is roughly what the 0.6-threshold rule of catalogs.labels gives on
# the full GZ2 main sample: ambiguous is the largest group, mergers are rare.
MIXES: dict[str, dict[str, float]] = {
    "gz2": {"spiral": 0.30, "elliptical": 0.25, "edge-on": 0.08, "merger": 0.03, AMBIGUOUS: 0.34},
    "balanced": {c: 1.0 / len(CLASSES) for c in CLASSES},
}

# What an "ambiguous" truth object is, and how often.
_AMBIGUOUS_KINDS = {"lenticular": 0.35, "irregular": 0.30, "faint": 0.35}

# Fractions of a frame (all geometry is sampled in frame units, so an object looks the same at
# any size). GZ2 cutouts are 0.02·R90 arcsec/pixel on 424 px, i.e. the frame spans 8.48 R90.
_FRAME_PER_R90 = 8.48
# Our profiles reach R90 at a lower surface brightness than SDSS's Petrosian R90; making them a bit
# larger gives GZ2's look (the galaxy spans about a third to a half of the frame).
_R90_BOOST = 1.6
# Intrinsic thickness of disks (scale height over scale length, edge-on axis ratio).
_DISK_Q0 = 0.12


# ----------------------------------------------------------------------------------------------
# Class assignment


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
# Features and rendering parameters


def _loguniform(rng, lo, hi):
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


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
