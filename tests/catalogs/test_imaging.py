"""catalogs.imaging: every supported file type decodes to (H, W, 3) uint8, or a reasoned ImageError."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from astropy.io import fits
from PIL import Image

from catalogs import imaging
from catalogs.imaging import ImageError, fits_to_rgb, load_rgb, stretch_fits


def _rgb_pattern(h=6, w=5) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 40, y * 30, (x + y) * 10 + 5], axis=-1).astype(np.uint8)


def _assert_rgb(a: np.ndarray, shape):
    assert a.dtype == np.uint8
    assert a.shape == (*shape, 3)
    assert a.flags["C_CONTIGUOUS"]


# --------------------------------------------------------------------------- raster


@pytest.mark.parametrize("name", ["a.png", "a.PNG", "a.tif", "a.TIFF"])
def test_lossless_rgb_roundtrips_exactly(tmp_path, name):
    want = _rgb_pattern()
    Image.fromarray(want).save(tmp_path / name)
    got = load_rgb(tmp_path / name)
    _assert_rgb(got, want.shape[:2])
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name", ["a.jpg", "b.JPEG"])
def test_jpeg_decodes_close_to_source(tmp_path, name):
    want = np.full((16, 16, 3), (200, 60, 20), np.uint8)
    Image.fromarray(want).save(tmp_path / name, quality=95)
    got = load_rgb(tmp_path / name)
    _assert_rgb(got, (16, 16))
    assert np.abs(got.astype(int) - want).max() <= 4


def test_grayscale_png_becomes_grey_rgb(tmp_path):
    g = np.arange(20, dtype=np.uint8).reshape(4, 5) * 12
    Image.fromarray(g, mode="L").save(tmp_path / "g.png")
    got = load_rgb(tmp_path / "g.png")
    _assert_rgb(got, (4, 5))
    for c in range(3):
        np.testing.assert_array_equal(got[..., c], g)


@pytest.mark.parametrize("suffix", ["png", "tif"])
def test_16bit_grey_is_scaled_not_clipped(tmp_path, suffix):
    g = np.array([[0, 257, 32768], [40000, 65280, 65535]], dtype=np.uint16)
    im = Image.fromarray(g)
    assert im.mode == "I;16"
    im.save(tmp_path / f"g16.{suffix}")
    got = load_rgb(tmp_path / f"g16.{suffix}")
    _assert_rgb(got, (2, 3))
    want = np.round(g.astype(np.float64) * 255 / 65535).astype(np.uint8)
    np.testing.assert_array_equal(got[..., 0], want)
    np.testing.assert_array_equal(got[..., 0], got[..., 2])
    assert got[0, 2, 0] == 128 and got[1, 2, 0] == 255  # clipping would give 255 from 32768 on


def test_palette_png_expands_to_rgb(tmp_path):
    want = _rgb_pattern(8, 8)
    im = Image.fromarray(want).quantize(colors=256)
    assert im.mode == "P"
    im.save(tmp_path / "p.png")
    got = load_rgb(tmp_path / "p.png")
    _assert_rgb(got, (8, 8))
    np.testing.assert_array_equal(got, np.asarray(im.convert("RGB")))


def test_rgba_png_drops_alpha(tmp_path):
    rgb = _rgb_pattern()
    alpha = np.full(rgb.shape[:2] + (1,), 10, np.uint8)
    Image.fromarray(np.concatenate([rgb, alpha], axis=-1), mode="RGBA").save(tmp_path / "a.png")
    got = load_rgb(tmp_path / "a.png")
    _assert_rgb(got, rgb.shape[:2])
    np.testing.assert_array_equal(got, rgb)


def test_float_tiff_in_unit_range(tmp_path):
    f = np.array([[0.0, 0.5], [1.0, 0.25]], np.float32)
    Image.fromarray(f, mode="F").save(tmp_path / "f.tif")
    got = load_rgb(tmp_path / "f.tif")
    np.testing.assert_array_equal(got[..., 1], [[0, 128], [255, 64]])


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("notes.jpg", b"this is not an image\n", "unreadable"),
        ("empty.png", b"", "unreadable"),
        ("broken.fits", b"SIMPLE  =  garbage" + b" " * 100, "unreadable"),
        ("broken.fits.gz", b"not gzip at all", "unreadable"),
        ("image.bmp", b"BM....", "unsupported_type"),
        ("image.gif", b"GIF89a", "unsupported_type"),
    ],
)
def test_bad_files_raise_reasoned_errors(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageError) as info:
        load_rgb(path)
    assert info.value.reason == reason
    assert name in str(info.value)


def test_truncated_jpeg_is_unreadable(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "t.jpg")
    data = (tmp_path / "t.jpg").read_bytes()
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageError) as info:
        load_rgb(tmp_path / "t.jpg")
    assert info.value.reason == "unreadable"


def test_missing_file(tmp_path):
    with pytest.raises(ImageError) as info:
        load_rgb(tmp_path / "nope.jpg")
    assert info.value.reason == "missing"


# --------------------------------------------------------------------------- FITS


def _galaxy(h=32, w=40, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    r2 = (x - w / 2) ** 2 + (y - h / 2) ** 2
    return 100.0 + 500.0 * np.exp(-r2 / 30.0) + rng.normal(0, 2.0, (h, w))


def test_fits_single_band_is_grey(tmp_path):
    fits.PrimaryHDU(_galaxy().astype(np.float32)).writeto(tmp_path / "g.fits")
    got = load_rgb(tmp_path / "g.fits")
    _assert_rgb(got, (32, 40))
    np.testing.assert_array_equal(got[..., 0], got[..., 1])
    np.testing.assert_array_equal(got[..., 0], got[..., 2])
    assert got[16, 20, 0] == 255  # the core saturates (above the 99.5th percentile)
    assert got[0, 0, 0] < 128  # sky stays dark
    assert got.max() == 255 and got.min() == 0


def test_stretch_is_monotonic():
    ramp = np.tile(np.linspace(0.0, 1000.0, 400), (5, 1))
    out = fits_to_rgb(ramp)[..., 0].astype(int)
    assert (np.diff(out, axis=1) >= 0).all()
    assert out[0, 0] == 0 and out[0, -1] == 255
    assert len(np.unique(out[0])) > 100  # a real ramp, not a step
    # pixelwise: a brighter input never gives a darker output, on a noisy image too
    img = _galaxy()
    flat_in, flat_out = img.ravel(), fits_to_rgb(img)[..., 0].ravel().astype(int)
    order = np.argsort(flat_in, kind="stable")
    assert (np.diff(flat_out[order]) >= 0).all()


def test_stretch_parameters_documented_values():
    img = _galaxy()
    _, info = stretch_fits(img)
    assert info.beta == imaging.SOFTENING == 0.1
    assert info.background[0] == pytest.approx(np.median(img))
    d = np.diff(img, axis=1)
    mad = np.median(np.abs(d - np.median(d)))
    assert info.sigma[0] == pytest.approx(1.4826 * mad / np.sqrt(2))
    # the noise estimate ignores a smooth gradient that a plain MAD of the pixels would count
    ramp = np.tile(np.linspace(0.0, 1000.0, 200), (200, 1))
    noisy = ramp + np.random.default_rng(3).normal(0.0, 2.0, ramp.shape)
    assert stretch_fits(noisy)[1].sigma[0] == pytest.approx(2.0, rel=0.05)
    x = img - np.median(img)
    assert info.scale == pytest.approx(max(np.percentile(x, 99.5), 10 * info.sigma[0]))


def test_fits_cube_maps_planes_g_r_i_to_blue_green_red(tmp_path):
    sky = np.random.default_rng(1).normal(10.0, 0.5, (3, 20, 24))
    cube = sky.copy()
    cube[2, 5:10, 5:10] += 200.0  # bright in i (plane 2) only
    cube[0, 12:16, 15:20] += 200.0  # bright in g (plane 0) only
    fits.PrimaryHDU(cube.astype(np.float32)).writeto(tmp_path / "c.fits")
    got = load_rgb(tmp_path / "c.fits")
    _assert_rgb(got, (20, 24))
    r, g, b = (got[7, 7, c] for c in range(3))
    assert r == 255 and g < 128 and b < 128
    r, g, b = (got[14, 17, c] for c in range(3))
    assert b == 255 and r < 128 and g < 128


def test_fits_common_scale_keeps_colour_ratio():
    cube = np.zeros((3, 10, 10))
    cube[:, 0, 0] = [1.0, 2.0, 4.0]  # one faint source, i brighter than r brighter than g
    cube[:, 5:, :] = np.array([10.0, 20.0, 40.0])[:, None, None] * np.linspace(0.1, 1, 10)[None, None, :]
    out = fits_to_rgb(cube)
    px = out[9, 5].astype(int)
    assert px[0] > px[1] > px[2]  # R (i) > G (r) > B (g)


def test_fits_nan_pixels_set_to_background_and_counted(tmp_path):
    img = _galaxy()
    img[0, 0] = np.nan
    img[3, 4] = np.inf
    img[5, 6] = -np.inf
    fits.PrimaryHDU(img).writeto(tmp_path / "n.fits")
    got, info = imaging.load_rgb_with_info(tmp_path / "n.fits")
    assert info.nonfinite == 3
    finite = img[np.isfinite(img)]
    assert info.background[0] == pytest.approx(np.median(finite))
    # background maps to 0 after subtraction → asinh(0) = 0 → black
    assert got[0, 0, 0] == 0 and got[3, 4, 0] == 0 and got[5, 6, 0] == 0
    assert got[16, 20, 0] == 255


@pytest.mark.parametrize(
    "data",
    [np.zeros((8, 8)), np.full((8, 8), 7.5), np.full((8, 8), np.nan), np.zeros((3, 8, 8))],
    ids=["all-zero", "constant", "all-nan", "zero-cube"],
)
def test_fits_without_signal(tmp_path, data):
    fits.PrimaryHDU(data).writeto(tmp_path / "z.fits")
    with pytest.raises(ImageError) as info:
        load_rgb(tmp_path / "z.fits")
    assert info.value.reason == "fits_no_signal"


def test_fits_image_in_extension_and_gzip(tmp_path):
    img = _galaxy().astype(np.float32)
    hdul = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(img, name="SCI")])
    hdul.writeto(tmp_path / "e.fits")
    with gzip.open(tmp_path / "e.fits.gz", "wb") as f:
        f.write((tmp_path / "e.fits").read_bytes())
    a = load_rgb(tmp_path / "e.fits")
    b = load_rgb(tmp_path / "e.fits.gz")
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, fits_to_rgb(img))


def test_fits_leading_unit_axes_are_dropped():
    img = _galaxy()
    np.testing.assert_array_equal(fits_to_rgb(img[None, None]), fits_to_rgb(img))


def test_fits_bad_shape_and_no_image(tmp_path):
    fits.PrimaryHDU(np.ones((4, 8, 8))).writeto(tmp_path / "four.fits")
    with pytest.raises(ImageError) as info:
        load_rgb(tmp_path / "four.fits")
    assert info.value.reason == "fits_bad_shape"
    table = fits.BinTableHDU.from_columns([fits.Column(name="x", format="E", array=np.arange(3.0))])
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(tmp_path / "table.fits")
    with pytest.raises(ImageError) as info:
        load_rgb(tmp_path / "table.fits")
    assert info.value.reason == "fits_no_image"


def test_a_survey_sized_cube_follows_the_documented_stretch_pixel_for_pixel():
    # Values, not speed (speed is no test's business): every pixel of a 3×512×512 g, r, i cube
    # is asinh((x − b)/(s·β)) / asinh(1/β), clipped, rounded, with i, r, g shown as R, G, B.
    rng = np.random.default_rng(0)
    big = rng.normal(0, 1, (3, 512, 512)) + np.array([5.0, 7.0, 9.0])[:, None, None]
    big[:, 200:300, 200:300] += np.array([50.0, 80.0, 120.0])[:, None, None]
    out, info = stretch_fits(big)
    x = big - np.array(info.background)[:, None, None]
    y = np.clip(np.arcsinh(x / (info.scale * info.beta)) / np.arcsinh(1.0 / info.beta), 0.0, 1.0)
    want = np.rint(y * 255.0).astype(np.uint8)
    assert out.shape == (512, 512, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.stack([want[2], want[1], want[0]], axis=-1))
    assert info.background == pytest.approx([5.0, 7.0, 9.0], abs=0.1)  # the source lifts the median a little
    r, g, b = out[250, 250].astype(int)
    assert r == 255 and r > g > b  # one common scale: the source keeps its colour (i > r > g)
    assert out[10, 10].max() < 64  # the sky dark


def test_every_error_type_is_documented_once():
    doc = imaging.__doc__
    assert len(set(imaging.ERROR_TYPES)) == len(imaging.ERROR_TYPES)
    for error_type in imaging.ERROR_TYPES:
        assert f"``{error_type}``" in doc, error_type
