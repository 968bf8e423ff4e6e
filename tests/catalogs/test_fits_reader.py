"""catalogs.readers, the FITS format: positions from RA/DEC keywords (decimal or sexagesimal) or
the WCS, gzip-compressed files, unreadable files skipped with their reason."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from astropy.io import fits

from catalogs.errors import SourceError
from catalogs.imaging import load_rgb
from catalogs.readers import read_source
from tests.catalogs.read_checks import assert_roundtrip, col


def test_fits_folder(tmp_path):
    root = tmp_path / "f"
    root.mkdir()
    img = np.random.default_rng(0).normal(0, 1, (10, 12)).astype(np.float32)
    h = fits.Header()
    h["RA"], h["DEC"] = 150.125, 2.25
    fits.PrimaryHDU(img, header=h).writeto(root / "kw.fits")
    h = fits.Header()
    for k, v in {"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": 30.0, "CRVAL2": -10.0,
                 "CRPIX1": 6.5, "CRPIX2": 5.5, "CDELT1": -0.001, "CDELT2": 0.001}.items():
        h[k] = v
    (root / "sub").mkdir()
    fits.PrimaryHDU(img, header=h).writeto(root / "sub" / "wcs.FIT")
    buf = root / "plain.fits"
    fits.PrimaryHDU(img).writeto(buf)
    (root / "plain.fits.gz").write_bytes(gzip.compress(buf.read_bytes()))
    buf.unlink()
    h = fits.Header()
    h["RA"], h["DEC"] = "10:00:00", "-05:30:00"
    fits.PrimaryHDU(img, header=h).writeto(root / "sexa.fits")
    (root / "broken.fits").write_bytes(b"definitely not FITS" * 10)
    r = read_source(root, "fits")
    t = assert_roundtrip(r, tmp_path)
    assert col(t, "object_id") == ["kw", "plain", "sexa", "wcs"]
    assert col(t, "image_path") == ["kw.fits", "plain.fits.gz", "sexa.fits", "sub/wcs.FIT"]
    ra, dec = col(t, "ra"), col(t, "dec")
    assert ra[0] == 150.125 and dec[0] == 2.25
    assert ra[1] is None and dec[1] is None
    assert ra[2] == pytest.approx(150.0) and dec[2] == pytest.approx(-5.5)
    # WCS: the centre pixel (5.5, 4.5) 0-based is CRPIX (6.5, 5.5) 1-based → CRVAL
    assert ra[3] == pytest.approx(30.0, abs=1e-6) and dec[3] == pytest.approx(-10.0, abs=1e-6)
    assert col(r.skipped, "object_id") == ["broken"]
    assert col(r.skipped, "source_row") == [0]
    assert "unreadable FITS header" in col(r.skipped, "reason")[0]
    assert all(load_rgb(r.catalog.image_file(i)).shape == (10, 12, 3) for i in range(len(r.catalog)))


def test_fits_folder_duplicate_ids(tmp_path):
    fits.PrimaryHDU(np.ones((2, 2))).writeto(tmp_path / "a.fits")
    fits.PrimaryHDU(np.ones((2, 2))).writeto(tmp_path / "a.fit")
    with pytest.raises(SourceError, match="same id 'a'"):
        read_source(tmp_path, "fits")
