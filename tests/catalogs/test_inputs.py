"""catalogs.inputs: crop and resize, the model input of every kind of file, hostile files refused
with a specific error type, conversions said, JPEG draft decoding."""

from __future__ import annotations

import io
import struct
import warnings
import zlib

import numpy as np
import pytest
from astropy.io import fits
from PIL import Image, ImageFile

from catalogs import inputs
from catalogs.imaging import (
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
    ImageError,
    load_rgb,
)
from catalogs.inputs import ImageSpec, crop_box, crop_resize, draft_scale, model_input
from tests.catalogs.test_imaging import _galaxy

SPEC = ImageSpec(size=32, crop=0.5, framing="fixed")


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
    got = model_input(tmp_path / name, ImageSpec(size=48, crop=0.6, framing="fixed"))
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
    spec = ImageSpec(size=64, crop=0.5, framing="fixed")
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

    monkeypatch.setattr(inputs, "open", refuse, raising=False)  # shadows the builtin in the module
    with pytest.raises(ImageError) as info:
        model_input(tmp_path / "locked.png", SPEC)
    assert info.value.reason == UNREADABLE and "Permission denied" in info.value.message


def test_a_folder_named_like_an_image_is_missing_and_said_so(tmp_path):
    (tmp_path / "d.jpg").mkdir()
    with pytest.raises(ImageError) as info:
        model_input(tmp_path / "d.jpg", SPEC)
    assert info.value.reason == MISSING and "is not a file" in info.value.message




@pytest.mark.parametrize(
    "w, h, crop, box",
    [(424, 424, 0.5, (106.0, 106.0, 318.0, 318.0)), (200, 100, 1.0, (50.0, 0.0, 150.0, 100.0)),
     (100, 300, 0.6, (20.0, 120.0, 80.0, 180.0))],
)
def test_crop_box_is_centred_on_the_shorter_side(w, h, crop, box):

    assert crop_box(w, h, crop) == pytest.approx(box)


def test_crop_resize_keeps_the_centre_and_size():

    rgb = np.zeros((424, 424, 3), np.uint8)
    rgb[200:224, 200:224] = 255  # a bright centre that must survive
    rgb[:50] = 90  # a border band the crop must drop
    out = crop_resize(rgb, 32, 0.5)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    assert out[15:17, 15:17].min() > 200
    assert out[0].max() == 0 and out[:, 0].max() == 0


def test_galaxy_framing_shows_a_galaxy_at_the_same_scale_however_the_cutout_frames_it(tmp_path):
    from tests.catalogs.test_sources import _galaxy_image

    fixed, galaxy = ImageSpec(size=32, crop=0.5, framing="fixed"), ImageSpec(size=32, crop=0.5, framing="galaxy")
    # The same galaxy in two surveys' cutouts: filling a fifth of the side, or a tenth.
    near, far = _galaxy_image(radius=0.2, seed=1), _galaxy_image(radius=0.1, seed=2)
    for name, rgb in (("near.png", near), ("far.png", far)):
        Image.fromarray(rgb).save(tmp_path / name)
    a, b = (model_input(tmp_path / n, galaxy) for n in ("near.png", "far.png"))
    assert b.crop == pytest.approx(a.crop / 2, rel=0.1)  # the crop follows the galaxy
    same = np.abs(a.pixels.astype(int) - b.pixels.astype(int)).mean()
    f_a, f_b = (model_input(tmp_path / n, fixed) for n in ("near.png", "far.png"))
    differ = np.abs(f_a.pixels.astype(int) - f_b.pixels.astype(int)).mean()
    assert f_a.crop == f_b.crop == 0.5 and same < differ / 3, (same, differ)
    # The decode path and an array already decoded give the same input (training = annotation).
    pixels, crop = inputs.frame(near, galaxy)
    assert crop == a.crop and np.array_equal(pixels, a.pixels)


def test_galaxy_framing_falls_back_to_the_fixed_crop_without_a_source_and_stays_in_bounds():
    from tests.catalogs.test_sources import _galaxy_image

    spec = ImageSpec(size=32, crop=0.45, framing="galaxy", galaxy_scale=2.75, min_crop=0.2)
    sky = np.random.default_rng(0).normal(12.0, 3.0, (100, 100, 3)).clip(0, 255).astype(np.uint8)
    assert spec.crop_of(sky) == 0.45
    assert spec.crop_of(_galaxy_image(radius=0.02)) == 0.2  # a speck: at least min_crop
    assert spec.crop_of(_galaxy_image(radius=0.45)) == 1.0  # fills the cutout: the whole of it
    assert spec.smallest_crop == 0.2 and ImageSpec(crop=0.5, framing="fixed").smallest_crop == 0.5
    with pytest.raises(ValueError, match="framing"):
        ImageSpec(framing="zoom")
