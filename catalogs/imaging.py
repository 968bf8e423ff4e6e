"""Decoding an image file to an 8-bit RGB array: the one place morphcat does it.

``load_rgb(path)`` returns an ``(H, W, 3) uint8`` array for every image type a catalog may point
at, or raises :class:`ImageError` with a short ``reason`` code for that one object:

==================  ==========================================================================
reason              meaning
==================  ==========================================================================
missing             the file does not exist
unsupported_type    the file name has an extension morphcat does not decode
unreadable          the decoder failed (corrupt, truncated, not really an image); the
                    underlying message is kept
fits_no_image       a FITS file without any HDU holding image data
fits_bad_shape      FITS image data that is neither 2-D nor a 3-plane cube ``(3, H, W)``
fits_no_signal      FITS image data with no finite pixel or zero dynamic range (constant)
==================  ==========================================================================

Raster files (``.jpg .jpeg .png .tif .tiff``, any case) go through Pillow: any mode becomes RGB
(palette and greyscale expanded, alpha dropped, CMYK converted); 16-bit greyscale (``I;16``) is
scaled linearly from the full 0…65535 range to 0…255 (``round(v·255/65535)``), never clipped;
32-bit integer (``I``) images are treated as 16-bit when their values fit in 0…65535 and
min-max scaled otherwise; float (``F``) images are scaled ×255 when they lie in [0, 1] and
min-max scaled otherwise. Multi-frame files use their first frame; EXIF orientation is ignored
(pixel order is kept as stored).

FITS files (``.fits .fit .fts``, optionally ``.gz``) go through ``astropy.io.fits``; the first HDU
that holds image data is used (primary or extension, compressed HDUs included). Leading axes of
length 1 are dropped, so ``(1, H, W)`` is a single band. A 2-D image becomes grey RGB; a 3-plane
cube ``(3, H, W)`` is a colour composite whose planes are taken **in increasing wavelength**,
e.g. SDSS g, r, i, and mapped to **B, G, R** as in the SDSS gri composites (Lupton et al. 2004):
plane 0 → blue, plane 1 → green, plane 2 → red. Both go through :func:`fits_to_rgb`, whose
docstring documents the stretch.

Error types
-----------
What a model sees of a cutout (crop, resize, the hostile-input checks) is
:func:`catalogs.inputs.model_input`. It raises :class:`ImageError` with one of these *error
types*: the ``error_type`` column of the annotation ``errors`` table, a public contract.

====================  ========================================================================
error type            meaning
====================  ========================================================================
``missing``           the file does not exist
``path_escape``       the catalog path leaves the catalog root (``..``, absolute, symlink out)
``unsupported_type``  a file name extension morphcat does not decode
``empty_file``        the file has zero bytes
``not_an_image``      the content is no JPEG, PNG or TIFF (e.g. a text or HTML page named .jpg)
``truncated``         the file ends before its image data does (Pillow is never allowed to
                      fill the rest with grey: ``ImageFile.LOAD_TRUNCATED_IMAGES`` stays False)
``too_small``         shorter side below ``MIN_IMAGE_SIDE`` px
``too_large``         more than ``MAX_IMAGE_PIXELS`` pixels (decompression bombs included)
``unreadable``        the decoder failed otherwise (corrupt data); its message is kept
``fits_no_image``     a FITS file without any HDU holding image data
``fits_bad_shape``    FITS image data neither 2-D nor a 3-plane cube
``fits_no_signal``    FITS data without a finite pixel or with zero dynamic range (all zeros)
====================  ========================================================================
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

RASTER_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fts.gz")

# Error types (ImageError.reason), documented in the module docstring. They are the
# ``error_type`` column of the annotation errors table, a public contract: never rename one.
MISSING = "missing"
PATH_ESCAPE = "path_escape"
UNSUPPORTED_TYPE = "unsupported_type"
EMPTY_FILE = "empty_file"
NOT_AN_IMAGE = "not_an_image"
TRUNCATED = "truncated"
TOO_SMALL = "too_small"
TOO_LARGE = "too_large"
UNREADABLE = "unreadable"
FITS_NO_IMAGE = "fits_no_image"
FITS_BAD_SHAPE = "fits_bad_shape"
FITS_NO_SIGNAL = "fits_no_signal"
ERROR_TYPES = (MISSING, PATH_ESCAPE, UNSUPPORTED_TYPE, EMPTY_FILE, NOT_AN_IMAGE, TRUNCATED, TOO_SMALL,
               TOO_LARGE, UNREADABLE, FITS_NO_IMAGE, FITS_BAD_SHAPE, FITS_NO_SIGNAL)

# Below this shorter side a cutout holds no morphology worth a prediction, and upscaling it to
# the model input would invent structure: model_input refuses it (GZ2 cutouts are 424 px).
MIN_IMAGE_SIDE = 32
# Above this many pixels (width × height, read from the header before decoding) model_input
# refuses an image: 4096² is ~100× a GZ2 cutout, so anything larger is a field image or a
# decompression bomb, and the limit bounds one decode thread's memory (~50 MB as 8-bit RGB,
# ~400 MB per float64 copy of a 3-plane FITS cube).
MAX_IMAGE_PIXELS = 4096 * 4096

# The stretch parameters, documented in fits_to_rgb.
PERCENTILE = 99.5
MIN_SCALE_SIGMAS = 10.0
SOFTENING = 0.1
MAD_TO_SIGMA = 1.4826


class ImageError(Exception):
    """One object's image cannot be decoded; ``reason`` is a short code (see the module doc)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


@dataclass(frozen=True)
class StretchInfo:
    """What :func:`stretch_fits` measured: per-plane background and noise (input units), the
    common scale (input units mapped to 1), the softening used, and how many pixels were NaN/inf
    (set to the background)."""

    background: tuple[float, ...]
    sigma: tuple[float, ...]
    scale: float
    beta: float
    nonfinite: int


def is_fits_name(name: str) -> bool:
    return name.lower().endswith(FITS_SUFFIXES)


def is_raster_name(name: str) -> bool:
    return name.lower().endswith(RASTER_SUFFIXES)


def load_rgb(path: Path) -> np.ndarray:
    """Decode ``path`` to an ``(H, W, 3) uint8`` array, or raise :class:`ImageError`."""
    return load_rgb_with_info(path)[0]


def load_rgb_with_info(path: Path) -> tuple[np.ndarray, StretchInfo | None]:
    """:func:`load_rgb` plus the FITS stretch measurements (``None`` for raster files)."""
    path = _existing_image_file(path)
    if is_fits_name(path.name):
        return stretch_fits(_read_fits_data(path), source=str(path))
    return _load_raster(path), None


def _existing_image_file(path: Path) -> Path:
    path = Path(path)
    name = path.name
    if not (is_fits_name(name) or is_raster_name(name)):
        raise ImageError(
            UNSUPPORTED_TYPE,
            f"{path}: cannot decode '{''.join(path.suffixes) or name}' files; morphcat reads "
            f"{', '.join(RASTER_SUFFIXES + FITS_SUFFIXES)}",
        )
    if not path.is_file():
        raise ImageError(MISSING, f"{path} is not a file" if path.exists() else f"{path} does not exist")
    return path


# --------------------------------------------------------------------------- raster (Pillow)


def _load_raster(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.seek(0)
            im.load()
            return _pil_to_rgb(im)
    except ImageError:
        raise
    except MemoryError:
        raise
    except Exception as exc:  # Pillow raises many types: UnidentifiedImageError, OSError, SyntaxError…
        raise ImageError(UNREADABLE, f"{path}: {type(exc).__name__}: {exc}") from None


def _pil_to_rgb(im) -> np.ndarray:
    mode = im.mode
    if mode.startswith("I;16"):
        a = np.asarray(im).astype(np.uint32)
        return _grey(((a * 255 + 32767) // 65535).astype(np.uint8))
    if mode == "I":
        a = np.asarray(im).astype(np.int64)
        if a.size and a.min() >= 0 and a.max() <= 65535:
            return _grey(((a * 255 + 32767) // 65535).astype(np.uint8))
        return _grey(_minmax(a.astype(np.float64)))
    if mode == "F":
        a = np.asarray(im).astype(np.float64)
        finite = np.isfinite(a)
        a = np.where(finite, a, 0.0)
        if a.size and a.min() >= 0.0 and a.max() <= 1.0:
            return _grey(np.round(a * 255.0).astype(np.uint8))
        return _grey(_minmax(a))
    if mode != "RGB":
        im = im.convert("RGB")
    out = np.asarray(im, dtype=np.uint8)
    return np.ascontiguousarray(out)


def _grey(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(a[:, :, None], 3, axis=2))


def _minmax(a: np.ndarray) -> np.ndarray:
    lo, hi = float(a.min()), float(a.max())
    if hi <= lo:
        return np.zeros(a.shape, np.uint8)
    return np.round((a - lo) * (255.0 / (hi - lo))).astype(np.uint8)


# --------------------------------------------------------------------------- FITS


def _read_fits_data(path: Path, before_data: Callable[[Any], None] | None = None) -> np.ndarray:
    """The first HDU's image data; ``before_data(hdu)`` sees each image HDU of two or more
    axes before its pixels are read (it raises to refuse the file)."""
    from astropy.io import fits

    try:
        with fits.open(path, memmap=False) as hdul:
            for hdu in hdul:
                if not getattr(hdu, "is_image", False):
                    continue
                if before_data is not None and len(hdu.shape) >= 2:
                    before_data(hdu)
                data = hdu.data
                if data is not None and getattr(data, "ndim", 0) >= 2 and data.size:
                    return np.array(data, dtype=np.float64)
    except (MemoryError, ImageError):
        raise
    except Exception as exc:  # astropy/gzip/zlib raise OSError, ValueError, TypeError, EOFError…
        raise ImageError(UNREADABLE, f"{path}: {type(exc).__name__}: {exc}") from None
    raise ImageError(FITS_NO_IMAGE, f"{path}: no HDU holds image data")


def _noise_sigma(plane: np.ndarray, finite: np.ndarray | None) -> float:
    """Robust pixel noise from adjacent-pixel differences (1.4826·MAD/√2)."""
    if plane.shape[1] < 2 and plane.shape[0] < 2:
        return 0.0
    axis = 1 if plane.shape[1] >= 2 else 0
    d = np.diff(plane, axis=axis)
    if finite is not None:
        both = finite[:, 1:] & finite[:, :-1] if axis == 1 else finite[1:] & finite[:-1]
        d = d[both]
    if d.size == 0:
        return 0.0
    d = d.ravel()
    return MAD_TO_SIGMA * float(np.median(np.abs(d - np.median(d)))) / np.sqrt(2.0)


def fits_to_rgb(data: np.ndarray) -> np.ndarray:
    """FITS pixel data → ``(H, W, 3) uint8`` with an asinh stretch (Lupton et al. 2004 style).

    ``data`` is a single band ``(H, W)`` (grey) or a cube ``(3, H, W)`` with planes in increasing
    wavelength (g, r, i → B, G, R). Leading axes of length 1 are dropped. Per image:

    1. NaN/inf pixels are counted and later set to the background (0 after subtraction).
    2. Per plane, background ``b`` = median of the finite pixels and pixel noise
       ``σ = 1.4826 · MAD(d) / √2`` where ``d`` are the differences between horizontally
       adjacent finite pixels (MAD-based: robust to the galaxy and to smooth gradients, which
       inflate a plain MAD of the pixel values when the object fills the cutout).
    3. ``x = data − b``. One **common** scale ``s`` for all planes (so band ratios, i.e. colours,
       survive): the 99.5th percentile of ``x`` over all finite pixels of all planes, but at
       least ``10·σ`` (largest plane's σ) so that an image that is nearly all sky is not
       stretched until its noise is white; when that is ≤ 0 (σ = 0 and almost everything at
       background) the maximum of ``x``. If no finite pixel exists,
       or the finite pixels are all equal (all-zero / constant image), :class:`ImageError`
       ``fits_no_signal`` is raised. (An image with nothing above its median but some range,
       e.g. a mask, is measured from its minimum instead of its median.)
    4. Softening ``β = 0.1`` in units of ``s``: the curve is ~linear for ``x/s ≲ β`` (which
       holds the sky noise, as ``σ/s ≤ 0.1``) and logarithmic above, compressing the bright
       core so faint outskirts stay visible (like Lupton's ``Q ≈ 10``).
    5. ``y = asinh((x/s) / β) / asinh(1 / β)``, applied per channel (monotonic: a brighter input
       pixel is never darker), clipped to [0, 1] (negative sky fluctuations → black, the top 0.5%
       → white) and rounded to 8 bits.
    """
    return stretch_fits(data)[0]


def stretch_fits(data: np.ndarray, source: str = "FITS data") -> tuple[np.ndarray, StretchInfo]:
    """:func:`fits_to_rgb` returning also its :class:`StretchInfo` (non-finite pixel count…)."""
    a = np.asarray(data, dtype=np.float64)
    while a.ndim > 2 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 2:
        planes = a[None]
    elif a.ndim == 3 and a.shape[0] == 3:
        planes = a
    else:
        raise ImageError(FITS_BAD_SHAPE,
                         f"{source}: image data of shape {a.shape}; expected (H, W) or (3, H, W)")
    if planes.shape[1] == 0 or planes.shape[2] == 0:
        raise ImageError(FITS_BAD_SHAPE, f"{source}: empty image of shape {a.shape}")

    finite = np.isfinite(planes)
    nonfinite = int(planes.size - np.count_nonzero(finite))
    if nonfinite == planes.size:
        raise ImageError(FITS_NO_SIGNAL, f"{source}: no finite pixel")

    x = np.empty_like(planes)
    backgrounds, sigmas = [], []
    for i in range(planes.shape[0]):
        plane, ok = planes[i], finite[i]
        values = plane[ok] if nonfinite else plane.ravel()
        if values.size == 0:
            bg = sig = 0.0  # this plane is all NaN: it shows as background
        else:
            bg = float(np.median(values))
            sig = _noise_sigma(plane, ok if nonfinite else None)
        backgrounds.append(bg)
        sigmas.append(sig)
        np.subtract(plane, bg, out=x[i])
    if nonfinite:
        x[~finite] = 0.0
        log.debug("%s: %d non-finite pixel(s) set to the background", source, nonfinite)

    signal = x[finite] if nonfinite else x.ravel()
    top = float(signal.max())
    if not top > 0.0:
        # Nothing above the median: constant (no signal), or a mostly-saturated/mask-like image,
        # which is then shown relative to its minimum rather than as a black square.
        values = planes[finite] if nonfinite else planes.ravel()
        lo, hi = float(values.min()), float(values.max())
        if not hi > lo:
            raise ImageError(FITS_NO_SIGNAL,
                             f"{source}: zero dynamic range (every finite pixel is {lo:g})")
        backgrounds = [lo] * planes.shape[0]
        np.subtract(planes, lo, out=x)
        if nonfinite:
            x[~finite] = 0.0
        signal = x[finite] if nonfinite else x.ravel()
        top = hi - lo
    scale = max(float(np.percentile(signal, PERCENTILE)), MIN_SCALE_SIGMAS * max(sigmas))
    if not scale > 0.0:
        scale = top
    beta = SOFTENING

    y = np.arcsinh(x / (scale * beta)) / np.arcsinh(1.0 / beta)
    np.clip(y, 0.0, 1.0, out=y)
    rgb = np.rint(y * 255.0).astype(np.uint8)
    if rgb.shape[0] == 1:
        out = np.repeat(rgb[0][:, :, None], 3, axis=2)
    else:
        out = np.stack([rgb[2], rgb[1], rgb[0]], axis=-1)  # (g, r, i) → (B, G, R)
    info = StretchInfo(tuple(backgrounds), tuple(sigmas), scale, beta, nonfinite)
    return np.ascontiguousarray(out), info
