"""What a model sees of a cutout: :class:`ImageSpec` and :func:`model_input`.

``model_input(path, spec)`` is the one function that turns a cutout into what a model sees
(training, export parity and annotation all call it), or raises :class:`ImageError` whose
``reason`` is one of the *error types* of :mod:`catalogs.imaging`: the ``error_type`` column of
the annotation ``errors`` table, a public contract. Unlike :func:`catalogs.imaging.load_rgb` it
refuses images outside the size limits from the header, before decoding any pixel, and says
which conversion it applied.

Conversions that have a sane answer are applied and reported in ``ModelInput.note``, a string of
``key=value`` pairs joined by ``", "`` (``None`` when nothing was converted):

- ``converted_from=<Pillow mode>`` for any raster mode other than RGB: ``L``, ``1``, ``P``,
  ``CMYK``, ``I;16``, ``I``, ``F``, ``LA``, ``RGBA``, … (the conversions of :func:`load_rgb`).
  Transparent images (alpha modes, palette images with a transparent index) are composited on
  **black**: transparent pixels carry no data, and black is what empty sky looks like in a
  cutout, whereas the colour stored under them is arbitrary (often white, which would read as a
  bright source). Fully opaque pixels are unchanged. (:func:`load_rgb` keeps the stored colour.)
- ``nonfinite_pixels=<n>`` for a FITS image whose NaN/inf pixels were set to the background.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from catalogs.imaging import (
    EMPTY_FILE,
    MAX_IMAGE_PIXELS,
    MIN_IMAGE_SIDE,
    NOT_AN_IMAGE,
    TOO_LARGE,
    TOO_SMALL,
    TRUNCATED,
    UNREADABLE,
    ImageError,
    _existing_image_file,
    _pil_to_rgb,
    _read_fits_data,
    is_fits_name,
    stretch_fits,
)
from catalogs.sources import galaxy_extent

CUTOUT_SIZE = 424  # px: GZ2's SDSS cutouts (and the synthetic survey's, catalogs.synthetic)

FRAMINGS = ("fixed", "galaxy")


@dataclass(frozen=True)
class ImageSpec:
    """How a cutout becomes a model input, identically in training, export and annotation.

    A centred square of the cutout is kept, then resized to ``size``×``size``; pixels are scaled
    to [0, 1] (``x / 255``). The square's side, as a fraction of the cutout's shorter side, is
    ``crop`` (``framing="fixed"``) or ``galaxy_scale`` × the extent of the galaxy at the centre
    (``framing="galaxy"``: ``catalogs.sources.galaxy_extent``, clipped to [``min_crop``, 1], and
    ``crop`` when no source stands out), so that surveys which frame their cutouts differently
    show the model galaxies at the same scale. Cropping by a *fraction* makes the same model
    serve GZ2's 424 px cutouts and the 224 px thumbnails of the shared sample. Saved in every
    model's sidecar and bundle, and read back from there.
    """

    size: int = 64
    crop: float = 0.5
    channels: int = 3
    scale: float = 1.0 / 255.0
    framing: str = "galaxy"
    # 2.5 × the extent frames the shared GZ2 thumbnails as the fixed half crop did (median 0.51)
    # and shows GZ1's smaller galaxies at the same scale (median crop 0.42).
    galaxy_scale: float = 2.5
    min_crop: float = 0.2

    def __post_init__(self) -> None:
        if self.size < 16:
            raise ValueError(f"image size must be ≥ 16 px, got {self.size}")
        if not 0.1 <= self.crop <= 1.0:
            raise ValueError(f"crop must be a fraction in [0.1, 1], got {self.crop}")
        if self.framing not in FRAMINGS:
            raise ValueError(f"framing must be one of {FRAMINGS}, got {self.framing!r}")
        if not 0.1 <= self.min_crop <= 1.0 or not self.galaxy_scale > 0:
            raise ValueError(f"galaxy framing needs min_crop in [0.1, 1] and galaxy_scale > 0, got "
                             f"{self.min_crop}, {self.galaxy_scale}")

    @property
    def smallest_crop(self) -> float:
        """The smallest crop this spec can choose: what decoding at reduced scale must allow for."""
        return self.crop if self.framing == "fixed" else min(self.crop, self.min_crop)

    def crop_of(self, rgb) -> float:
        """The crop fraction for a decoded cutout ((H, W, 3) uint8 or an RGB ``PIL.Image``)."""
        if self.framing == "fixed":
            return self.crop
        extent = galaxy_extent(rgb)
        if extent is None:
            return self.crop
        return float(min(1.0, max(self.min_crop, self.galaxy_scale * extent)))


def frame(rgb: np.ndarray, spec: ImageSpec) -> tuple[np.ndarray, float]:
    """A decoded cutout as the model sees it: ``(pixels (size, size, 3) uint8, crop used)``."""
    crop = spec.crop_of(rgb)
    return crop_resize(rgb, spec.size, crop), crop


def crop_box(width: int, height: int, crop: float) -> tuple[float, float, float, float]:
    """The centred square box kept from a ``width``×``height`` image: ``crop`` of the shorter side."""
    side = min(width, height) * crop
    left, top = (width - side) / 2.0, (height - side) / 2.0
    return (left, top, left + side, top + side)


def crop_resize(rgb: np.ndarray, size: int, crop: float) -> np.ndarray:
    """Centre-crop ``crop`` of the shorter side and resize to ``size``×``size`` in one Pillow
    call (bilinear with antialiasing when shrinking). Training and annotation both call this, so
    a model always sees pixels prepared the same way."""
    from PIL import Image

    h, w = rgb.shape[:2]
    return _resize_box(Image.fromarray(rgb), size, crop_box(w, h, crop))


def _resize_box(image, size: int, box: tuple[float, float, float, float]) -> np.ndarray:
    """The ``box`` of an RGB ``PIL.Image`` resized to ``size``×``size`` as uint8."""
    from PIL import Image

    out = image.resize((size, size), Image.Resampling.BILINEAR, box=box)
    return np.asarray(out, dtype=np.uint8)


# JPEG DCT scaling (Pillow draft mode) decodes at 1/2, 1/4 or 1/8 of the size: a 424 px
# synthetic-survey JPEG in 1.06 instead of 1.66 ms of CPU (entropy decoding, which scaling
# cannot skip, is most of it), and the resize that follows has 4× fewer pixels to read. A scale
# is used only while the central crop keeps at least this many times the model input's side in
# decoded pixels. Measured on the synthetic 424 px survey against an ideal
# area-average downsample, the mean error stays within 4 % of a full decode's for 1/2 at ≥ 1.66×
# and within 7 % for 1/4 at ≥ 2.5× and 1/8 at ≥ 3.3×, but grows by 20 % for 1/4 or 1/8 at 1.66×
# and by 50 % at 1.1×: the coarser scalings alias more, so they need more margin.
DRAFT_MIN_OVERSAMPLING = {8: 4.0, 4: 3.0, 2: 1.5}

# Pillow may only identify these formats: its other plugins (EPS runs Ghostscript, for one)
# never see a catalog file, whatever its name.
_PILLOW_FORMATS = ("JPEG", "PNG", "TIFF")
_JPEG_FORMATS = ("JPEG", "MPO")  # Pillow names multi-picture JPEGs MPO
_SIGNATURES = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG", b"II*\x00": "TIFF",
               b"MM\x00*": "TIFF", b"II+\x00": "BigTIFF", b"MM\x00+": "BigTIFF"}
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")


@dataclass(frozen=True)
class ModelInput:
    """One cutout as a model sees it, before scaling to [0, 1].

    ``pixels`` is ``(size, size, 3) uint8``; ``source_size`` the stored ``(width, height)``;
    ``note`` the conversions applied (see the module docstring), ``None`` when none;
    ``draft_scale`` the JPEG DCT reduction used (1 = full decode); ``crop`` the fraction of the
    shorter side the model input covers."""

    pixels: np.ndarray
    source_size: tuple[int, int]
    note: str | None = None
    draft_scale: int = 1
    crop: float = 0.5


def draft_scale(width: int, height: int, size: int, crop: float) -> int:
    """The largest JPEG DCT reduction (8, 4, 2, else 1) that keeps the centre crop of a
    ``width``×``height`` image at least ``DRAFT_MIN_OVERSAMPLING[scale]`` × ``size`` px wide."""
    crop_side = crop * min(width, height)
    for scale, margin in DRAFT_MIN_OVERSAMPLING.items():
        if crop_side / scale >= margin * size:
            return scale
    return 1


def model_input(path: Path, spec: ImageSpec, *, draft: bool = True) -> ModelInput:
    """Decode ``path``, centre-crop ``spec.crop`` of its shorter side and resize it to
    ``spec.size`` px, or raise :class:`ImageError` with one of the error types.

    The only way morphcat turns a cutout into model pixels: training and annotation both call
    it, so they agree to the byte. Large JPEGs are decoded at reduced scale (:func:`draft_scale`);
    ``draft=False`` decodes every pixel (for measuring what that saves, never for models).
    """
    try:
        path = _existing_image_file(path)
        size = path.stat().st_size
    except OSError as exc:  # permissions, I/O errors: this file's problem, not the run's
        raise ImageError(UNREADABLE, f"{path}: {exc}") from None
    if size == 0:
        raise ImageError(EMPTY_FILE, f"{path}: the file is empty (0 bytes)")
    if is_fits_name(path.name):
        return _fits_model_input(path, spec)
    return _raster_model_input(path, spec, draft)


def _check_size(source: Path, width: int, height: int) -> None:
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageError(TOO_LARGE, f"{source}: {width}×{height} = {width * height:,} pixels, more than the "
                                    f"{MAX_IMAGE_PIXELS:,} morphcat decodes (refused from the header)")
    if min(width, height) < MIN_IMAGE_SIDE:
        raise ImageError(TOO_SMALL, f"{source}: {width}×{height} px; a cutout needs at least "
                                    f"{MIN_IMAGE_SIDE} px on its shorter side")


def _fits_model_input(path: Path, spec: ImageSpec) -> ModelInput:
    data = _read_fits_data(path, before_data=lambda hdu: _check_fits_hdu(path, hdu))
    rgb, info = stretch_fits(data, source=str(path))
    height, width = rgb.shape[:2]
    note = f"nonfinite_pixels={info.nonfinite}" if info.nonfinite else None
    pixels, crop = frame(rgb, spec)
    return ModelInput(pixels, (width, height), note, crop=crop)


def _check_fits_hdu(path: Path, hdu) -> None:
    """The size limits from the header, and whether the file holds all the data the header
    promises (astropy would fail later with a bare reshape error)."""
    from astropy.io import fits

    _check_size(path, hdu.shape[-1], hdu.shape[-2])
    if path.name.lower().endswith(".gz") or isinstance(hdu, fits.CompImageHDU):
        return  # the file size says nothing about the data size of these
    end, length = hdu.fileinfo()["datLoc"] + hdu.size, path.stat().st_size
    if end > length:
        raise ImageError(TRUNCATED, f"{path}: the file ends at byte {length:,} but its header puts image "
                                    f"data up to byte {end:,}")


def _pillow():
    """``PIL.Image``, after checking that Pillow may not fill truncated images with grey and
    that its decompression-bomb *warning* raises (so it becomes ``too_large``, not a line on
    stderr). The filter is put back when a caller or test harness reset the filters."""
    from PIL import Image, ImageFile

    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True in this process, so Pillow would "
                           "fill truncated images with grey; morphcat decodes model inputs only with it False")
    if not any(f[0] == "error" and f[2] is Image.DecompressionBombWarning for f in warnings.filters):
        warnings.filterwarnings("error", category=Image.DecompressionBombWarning)
    return Image


def _raster_model_input(path: Path, spec: ImageSpec, draft: bool = True) -> ModelInput:
    Image = _pillow()
    try:  # our own handle: Pillow leaves its file open when a bomb check raises inside open()
        fh = open(path, "rb")
    except OSError as exc:
        raise ImageError(UNREADABLE, f"{path}: {exc}") from None
    with fh:
        head = fh.read(16)  # to tell a text file named .jpg from a broken image
        fh.seek(0)
        try:
            im = Image.open(fh, formats=_PILLOW_FORMATS)
        except MemoryError:
            raise
        except Exception as exc:  # UnidentifiedImageError, OSError, DecompressionBomb*, SyntaxError…
            raise _decode_error(path, exc, head) from None
        with im:
            width, height = im.size
            _check_size(path, width, height)
            mode = im.mode
            scale = _apply_draft(im, spec) if draft else 1
            try:
                im.load()
            except MemoryError:
                raise
            except Exception as exc:
                raise _decode_error(path, exc, head) from None
            transparent = mode in _ALPHA_MODES or (mode == "P" and "transparency" in im.info)
            if transparent:
                rgb = Image.fromarray(_composite_on_black(im))
            else:  # an RGB image is resized as decoded: no round trip through numpy
                rgb = im if mode == "RGB" else Image.fromarray(_pil_to_rgb(im))
            crop = spec.crop_of(rgb)
            # The crop box in decoded pixels: decoded pixel j covers stored pixels [j·s, (j+1)·s).
            box = tuple(v / scale for v in crop_box(width, height, crop))
            pixels = _resize_box(rgb, spec.size, box)
    note = None if mode == "RGB" else f"converted_from={mode}"
    return ModelInput(pixels, (width, height), note, scale, crop)


def _apply_draft(im, spec: ImageSpec) -> int:
    """Ask the JPEG decoder for the reduction :func:`draft_scale` allows; the one it applied."""
    if im.format not in _JPEG_FORMATS:
        return 1
    width, height = im.size
    wanted = draft_scale(width, height, spec.size, spec.smallest_crop)
    if wanted == 1:
        return 1
    # Pillow picks the largest scale s with size // s ≥ the requested size: exactly `wanted`.
    applied = im.draft(im.mode, (width // wanted, height // wanted))
    if applied is None:  # a JPEG Pillow cannot scale (several tiles)
        return 1
    return round(width / applied[1][2])


def _composite_on_black(im) -> np.ndarray:
    rgba = np.asarray(im.convert("RGBA"), dtype=np.uint16)
    rgb = (rgba[..., :3] * rgba[..., 3:] + 127) // 255
    return np.ascontiguousarray(rgb.astype(np.uint8))


def _decode_error(path: Path, exc: Exception, head: bytes) -> ImageError:
    """Pillow's exception for one file (whose first bytes are ``head``) → the most specific
    error type."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return ImageError(TOO_LARGE, f"{path}: more than {MAX_IMAGE_PIXELS:,} pixels ({exc})")
    if isinstance(exc, UnidentifiedImageError):
        kind = next((k for sig, k in _SIGNATURES.items() if head.startswith(sig)), None)
        if kind is None:
            return ImageError(NOT_AN_IMAGE, f"{path}: the content is not a JPEG, PNG or TIFF image "
                                            f"(it starts with {head!r})")
        return ImageError(UNREADABLE, f"{path}: starts like a {kind} file but its header cannot be parsed")
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, EOFError) or "truncated" in str(exc).lower():
        return ImageError(TRUNCATED, f"{path}: the file ends before its image data does ({text})")
    return ImageError(UNREADABLE, f"{path}: {text}")


def dihedral_views(images: np.ndarray) -> list[np.ndarray]:
    """The 8 rotations/flips of a batch (N, H, W, C): the 4 quarter turns, then each mirrored.
    Training's view pooling, cross-validation's test-time averaging and ``select``'s BALD use it."""
    turned = [np.rot90(images, k, axes=(1, 2)) for k in range(4)]
    return [np.ascontiguousarray(v) for v in turned + [t[:, :, ::-1] for t in turned]]

