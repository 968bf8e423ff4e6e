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


@pytest.mark.parametrize(
    "w, h, crop, box",
    [(424, 424, 0.5, (106.0, 106.0, 318.0, 318.0)), (200, 100, 1.0, (50.0, 0.0, 150.0, 100.0)),
     (100, 300, 0.6, (20.0, 120.0, 80.0, 180.0))],
)
def test_crop_box_is_centred_on_the_shorter_side(w, h, crop, box):
    from catalogs.imaging import crop_box

    assert crop_box(w, h, crop) == pytest.approx(box)


def test_crop_resize_keeps_the_centre_and_size():
    from catalogs.imaging import crop_resize

    rgb = np.zeros((424, 424, 3), np.uint8)
    rgb[200:224, 200:224] = 255  # a bright centre that must survive
    rgb[:50] = 90  # a border band the crop must drop
    out = crop_resize(rgb, 32, 0.5)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    assert out[15:17, 15:17].min() > 200
    assert out[0].max() == 0 and out[:, 0].max() == 0


# --------------------------------------------------------------------------- model inputs

import io  # noqa: E402
import struct  # noqa: E402
import warnings  # noqa: E402
import zlib  # noqa: E402

from PIL import ImageFile  # noqa: E402

from catalogs.imaging import (  # noqa: E402
    EMPTY_FILE,
    FITS_NO_SIGNAL,
    MAX_IMAGE_PIXELS,
    MIN_IMAGE_SIDE,
    MISSING,
    NOT_AN_IMAGE,
    TOO_LARGE,
    TOO_SMALL,
    TRUNCATED,
    UNREADABLE,
    UNSUPPORTED_TYPE,
    crop_resize,
    draft_scale,
    model_input,
)
from models.config import ImageSpec  # noqa: E402

SPEC = ImageSpec(size=32, crop=0.5)


def _blob(h=64, w=64, seed=0) -> np.ndarray:
    """A smooth off-centre galaxy-like blob with noise: structure a misplaced crop would show."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    r2 = ((x - 0.55 * w) / (0.12 * w)) ** 2 + ((y - 0.45 * h) / (0.08 * h)) ** 2
    core = 220 * np.exp(-r2 / 2)[..., None] * np.array([1.0, 0.8, 0.6])
    return np.clip(core + 15 + rng.normal(0, 3, (h, w, 3)), 0, 255).astype(np.uint8)


def _png_with_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width``×``height`` but whose data is a few bytes: a
    decompression bomb as far as any header check can tell."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


def _file(name: str, data: bytes | str):
    """A builder writing ``data`` to ``name`` in the test folder."""
    def build(folder):
        path = folder / name
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path

    return build


def _image(name: str, image: Image.Image, **save):
    def build(folder):
        image.save(folder / name, **save)
        return folder / name

    return build


def _fits(name: str, data: np.ndarray):
    def build(folder):
        fits.PrimaryHDU(data).writeto(folder / name)
        return folder / name

    return build


def _truncated(name: str, fmt: str):
    buf = io.BytesIO()
    Image.fromarray(_blob()).save(buf, fmt)
    return _file(name, buf.getvalue()[: len(buf.getvalue()) // 2])


def _fits_header_only(name: str, width: int, height: int):
    header = fits.Header([("SIMPLE", True), ("BITPIX", 8), ("NAXIS", 2), ("NAXIS1", width), ("NAXIS2", height)])
    return _file(name, header.tostring())


# name → (builder of one hostile file, expected error type)
REFUSED = {
    "zero-byte jpeg": (_file("z.jpg", b""), EMPTY_FILE),
    "zero-byte fits": (_file("z.fits", b""), EMPTY_FILE),
    "truncated jpeg": (_truncated("t.jpg", "JPEG"), TRUNCATED),
    "truncated png": (_truncated("t.png", "PNG"), TRUNCATED),
    "text named .jpg": (_file("n.jpg", "404 not found\n"), NOT_AN_IMAGE),
    "html named .png": (_file("h.png", "<html><body>error</body></html>"), NOT_AN_IMAGE),
    "bmp named .jpg": (_image("b.jpg", Image.fromarray(_blob()), format="BMP"), NOT_AN_IMAGE),
    "png with a broken header": (_file("bh.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40), UNREADABLE),
    "tiny 8x8": (_image("tiny.png", Image.fromarray(_blob(8, 8))), TOO_SMALL),
    "thin 31x200": (_image("thin.png", Image.fromarray(_blob(200, 31))), TOO_SMALL),
    "tiny fits": (_fits("tiny.fits", _galaxy(8, 8)), TOO_SMALL),
    "bomb 20000x20000": (_file("bomb.png", _png_with_header(20000, 20000)), TOO_LARGE),
    "pillow-warning size 10000x10000": (_file("w.png", _png_with_header(10000, 10000)), TOO_LARGE),
    "over our limit 5000x5000": (_file("o.png", _png_with_header(5000, 5000)), TOO_LARGE),
    "fits bomb header": (_fits_header_only("bomb.fits", 20000, 20000), TOO_LARGE),
    "missing": (lambda folder: folder / "gone.jpg", MISSING),
    "unsupported suffix": (_image("a.gif", Image.fromarray(_blob())), UNSUPPORTED_TYPE),
    "fits all zeros": (_fits("zero.fits", np.zeros((40, 40))), FITS_NO_SIGNAL),
}


@pytest.mark.filterwarnings("ignore:File may have been truncated")  # astropy on the header-only FITS
@pytest.mark.parametrize("case", sorted(REFUSED))
def test_model_input_refuses_hostile_files_with_a_specific_error_type(tmp_path, case, monkeypatch):
    build, error_type = REFUSED[case]
    path = build(tmp_path)

    def no_decoding(self):
        raise AssertionError("pixels were decoded")

    if error_type == TOO_LARGE:  # refused from the header: decoding pixels would be a failure
        monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ImageError) as info:
            model_input(path, SPEC)
    assert info.value.reason == error_type, str(info.value)
    assert path.name in info.value.message
    assert not [w for w in caught if "Decompression" in type(w.message).__name__], "Pillow warned"


def test_truncated_fits_is_truncated_not_a_reshape_error(tmp_path):
    fits.PrimaryHDU(_galaxy(64, 64)).writeto(tmp_path / "g.fits")
    data = (tmp_path / "g.fits").read_bytes()
    (tmp_path / "g.fits").write_bytes(data[: len(data) // 2])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # astropy says so too
        with pytest.raises(ImageError) as info:
            model_input(tmp_path / "g.fits", SPEC)
    assert info.value.reason == TRUNCATED


def test_size_limits_are_inclusive_at_the_documented_values(tmp_path):
    Image.fromarray(_blob(MIN_IMAGE_SIDE, MIN_IMAGE_SIDE)).save(tmp_path / "edge.png")
    assert model_input(tmp_path / "edge.png", SPEC).pixels.shape == (32, 32, 3)
    side = int(MAX_IMAGE_PIXELS**0.5)
    assert side * side == MAX_IMAGE_PIXELS
    (tmp_path / "max.png").write_bytes(_png_with_header(side, side))
    with pytest.raises(ImageError) as info:  # accepted by the size check, then its tiny data fails
        model_input(tmp_path / "max.png", SPEC)
    assert info.value.reason in (TRUNCATED, UNREADABLE)


def _solid(mode: str, value, size=(48, 40)) -> Image.Image:
    return Image.new(mode, size, value)


# name → (builder, expected RGB of every model-input pixel, expected note)
CONVERTED = {
    "grey png": (_image("g.png", _solid("L", 90)), (90, 90, 90), "converted_from=L"),
    "grey jpeg": (_image("g.jpg", _solid("L", 90), quality=100), (90, 90, 90), "converted_from=L"),
    "bilevel png": (_image("b.png", _solid("1", 1)), (255, 255, 255), "converted_from=1"),
    "16-bit png, half scale": (_image("h.png", Image.fromarray(np.full((40, 48), 32768, np.uint16))),
                               (128, 128, 128), "converted_from=I;16"),
    "16-bit tiff, 1/255 of full": (_image("h.tif", Image.fromarray(np.full((40, 48), 257, np.uint16))),
                                   (1, 1, 1), "converted_from=I;16"),
    "palette png": (_image("p.png", _solid("RGB", (200, 60, 20)).quantize(4)), (200, 60, 20), "converted_from=P"),
    # 200·128/255 = 100.4, 100·128/255 = 50.2, 50·128/255 = 25.1
    "rgba half transparent": (_image("a.png", _solid("RGBA", (200, 100, 50, 128))), (100, 50, 25),
                              "converted_from=RGBA"),
    "rgba opaque": (_image("o.png", _solid("RGBA", (200, 100, 50, 255))), (200, 100, 50), "converted_from=RGBA"),
    "rgba transparent white": (_image("t.png", _solid("RGBA", (255, 255, 255, 0))), (0, 0, 0),
                               "converted_from=RGBA"),
    "grey + alpha": (_image("la.png", _solid("LA", (180, 51))), (36, 36, 36), "converted_from=LA"),  # 180·51/255
    "palette with a transparent index": (_image("pt.png", _solid("P", 3), transparency=3), (0, 0, 0),
                                         "converted_from=P"),
    "rgb tiff": (_image("c.tif", _solid("RGB", (10, 20, 30))), (10, 20, 30), None),
    "cmyk jpeg": (_image("k.jpg", _solid("CMYK", (0, 255, 255, 0)), quality=100), None, "converted_from=CMYK"),
}


@pytest.mark.parametrize("case", sorted(CONVERTED))
def test_model_input_converts_other_modes_and_says_so(tmp_path, case):
    build, rgb, note = CONVERTED[case]
    path = build(tmp_path)
    got = model_input(path, SPEC)
    assert got.pixels.shape == (32, 32, 3) and got.pixels.dtype == np.uint8
    assert got.note == note
    assert got.source_size == (48, 40)
    if rgb is None:  # CMYK: whatever Pillow's conversion gives, uniformly
        with Image.open(path) as im:
            rgb = im.convert("RGB").getpixel((20, 20))
    tolerance = 2 if path.suffix == ".jpg" else 0
    assert np.abs(got.pixels.astype(int) - np.array(rgb)).max() <= tolerance, got.pixels[0, 0]


def test_model_input_notes_nonfinite_fits_pixels(tmp_path):
    img = _galaxy(64, 64)
    img[:2, :3] = np.nan
    fits.PrimaryHDU(img).writeto(tmp_path / "n.fits")
    got = model_input(tmp_path / "n.fits", SPEC)
    assert got.note == "nonfinite_pixels=6"
    rgb = load_rgb(tmp_path / "n.fits")
    np.testing.assert_array_equal(got.pixels, crop_resize(rgb, SPEC.size, SPEC.crop))


@pytest.mark.parametrize("name, kw", [("a.png", {}), ("a.tif", {}), ("small.jpg", {"quality": 90})])
def test_model_input_without_draft_equals_load_rgb_then_crop_resize(tmp_path, name, kw):
    Image.fromarray(_blob(120, 100)).save(tmp_path / name, **kw)
    got = model_input(tmp_path / name, ImageSpec(size=48, crop=0.6))
    assert got.draft_scale == 1 and got.note is None and got.source_size == (100, 120)
    np.testing.assert_array_equal(got.pixels, crop_resize(load_rgb(tmp_path / name), 48, 0.6))


@pytest.mark.parametrize(
    "w, h, size, crop, scale",
    [
        (424, 424, 64, 0.5, 2),  # 212 px crop: 106 px at 1/2 is 1.66× the input (≥ 1.5)
        (424, 424, 128, 0.5, 1),  # 106 px at 1/2 would be < 1.5 × 128
        (424, 424, 32, 1.0, 4),  # 424/4 = 106 ≥ 3 × 32; 424/8 = 53 < 4 × 32
        (224, 224, 64, 0.5, 1),  # the shared sample's thumbnails: 112/2 = 56 < 96
        (2048, 1500, 64, 0.5, 2),  # shorter side counts: 750/4 = 187.5 < 192
        (4096, 4096, 64, 0.5, 8),  # 2048/8 = 256 ≥ 4 × 64
    ],
)
def test_draft_scale_keeps_the_documented_margin(w, h, size, crop, scale):
    assert draft_scale(w, h, size, crop) == scale


def test_large_jpeg_is_decoded_at_reduced_scale_close_to_a_full_decode(tmp_path):
    Image.fromarray(_blob(424, 424)).save(tmp_path / "big.jpg", quality=90)
    spec = ImageSpec(size=64, crop=0.5)
    got = model_input(tmp_path / "big.jpg", spec)
    assert got.draft_scale == 2 and got.source_size == (424, 424)
    full = crop_resize(load_rgb(tmp_path / "big.jpg"), 64, 0.5)
    diff = np.abs(got.pixels.astype(int) - full.astype(int))
    # A misplaced crop box would shift the blob's edge by pixels: differences of tens of levels.
    assert diff.mean() < 1.5 and diff.max() <= 12, (diff.mean(), diff.max())


def test_truncated_images_are_never_filled_with_grey(tmp_path, monkeypatch):
    path = _truncated("t.jpg", "JPEG")(tmp_path)
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(RuntimeError, match="LOAD_TRUNCATED_IMAGES"):
        model_input(path, SPEC)


def test_a_file_that_cannot_be_opened_is_unreadable(tmp_path, monkeypatch):
    Image.fromarray(_blob()).save(tmp_path / "locked.png")

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(imaging, "open", refuse, raising=False)  # shadows the builtin in the module
    with pytest.raises(ImageError) as info:
        model_input(tmp_path / "locked.png", SPEC)
    assert info.value.reason == UNREADABLE and "Permission denied" in info.value.message


def test_a_folder_named_like_an_image_is_missing_and_said_so(tmp_path):
    (tmp_path / "d.jpg").mkdir()
    with pytest.raises(ImageError) as info:
        model_input(tmp_path / "d.jpg", SPEC)
    assert info.value.reason == MISSING and "is not a file" in info.value.message


def test_every_error_type_is_documented_once():
    doc = imaging.__doc__
    assert len(set(imaging.ERROR_TYPES)) == len(imaging.ERROR_TYPES)
    for error_type in imaging.ERROR_TYPES:
        assert f"``{error_type}``" in doc, error_type
