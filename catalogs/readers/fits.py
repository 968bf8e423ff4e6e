"""A folder of FITS cutouts (``fmt="fits"``).

Every ``.fits``, ``.fit`` or ``.fts`` file under ``src`` (any case, optionally ``.gz``; searched
recursively, hidden files ignored, sorted by relative path) is one object. ``object_id`` is the
file name without its FITS extension(s) (``NGC1234.fits.gz`` → ``NGC1234``); ``image_path`` is
the path relative to the folder, which is the root. Two files with the same id are an error
naming both.

Coordinates, read from headers only (pixels are decoded at ingest by
:func:`catalogs.imaging.load_rgb`):

1. ``RA``/``DEC`` keywords of the primary header, in degrees (numbers, or text: decimal degrees
   or sexagesimal ``hh:mm:ss``/``dd:mm:ss``);
2. else a celestial WCS, from the primary header or the first image HDU's: the sky position of
   the image centre pixel (``((NAXIS1−1)/2, (NAXIS2−1)/2)``, 0-based), converted to ICRS;
3. else null. RA is wrapped into [0, 360); a DEC outside [−90, 90] is treated as unknown.

A file whose header cannot be read goes to ``skipped`` with the reason; the rest of the folder
is still read.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pyarrow as pa

from catalogs import imaging
from catalogs.errors import SourceError
from catalogs.readers.common import ReadResult, finish, require_exists, scan_folder, short_error, skipped_table

FORMAT = "fits"


def fits_id(name: str) -> str:
    """File name without its FITS extension(s): ``a.fits.gz`` → ``a``."""
    lower = name.lower()
    for suffix in sorted(imaging.FITS_SUFFIXES, key=len, reverse=True):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_fits(src: Path) -> ReadResult:
    src = require_exists(Path(src), "FITS folder")
    if not src.is_dir():
        raise SourceError(f"{src} is not a folder; format 'fits' reads a folder of "
                          f"{', '.join(imaging.FITS_SUFFIXES)} files")
    scan = scan_folder(src, imaging.is_fits_name, fits_id, "FITS")
    if not scan.paths:
        raise SourceError(f"no FITS files ({', '.join(imaging.FITS_SUFFIXES)}) found in {src}")

    ids, paths, ras, decs = [], [], [], []
    skip_ids, skip_rows, skip_reasons = [], [], []
    no_coords = bad_coords = 0
    for row, (rel, oid) in enumerate(zip(scan.paths, scan.ids)):
        try:
            ra, dec = header_coordinates(src / rel)
        except _HeaderError as exc:
            skip_ids.append(oid)
            skip_rows.append(row)
            skip_reasons.append(f"unreadable FITS header: {exc}")
            continue
        if ra is not None and not (-90.0 <= dec <= 90.0 and math.isfinite(ra)):
            ra = dec = None
            bad_coords += 1
        elif ra is None:
            no_coords += 1
        ids.append(oid)
        paths.append(rel)
        ras.append(None if ra is None else ra % 360.0)
        decs.append(dec)

    notes = list(scan.notes)
    if no_coords:
        notes.append(f"{no_coords} FITS file(s) without RA/DEC keywords or a celestial WCS: ra/dec null")
    if bad_coords:
        notes.append(f"{bad_coords} FITS file(s) with impossible coordinates (|DEC| > 90 or not finite): "
                     "ra/dec null")
    if skip_ids:
        notes.append(f"{len(skip_ids)} FITS file(s) skipped: header unreadable")
    if not ids:
        raise SourceError(f"none of the {len(scan.paths)} FITS file(s) in {src} has a readable header; "
                          f"first: {scan.paths[0]}: {skip_reasons[0]}")
    columns = {
        "object_id": pa.array(ids, pa.string()),
        "image_path": pa.array(paths, pa.string()),
        "ra": pa.array(ras, pa.float64()),
        "dec": pa.array(decs, pa.float64()),
    }
    return finish(columns, src.resolve(), FORMAT, src, skipped_table(skip_ids, skip_rows, skip_reasons), notes)


class _HeaderError(Exception):
    pass


def header_coordinates(path: Path) -> tuple[float | None, float | None]:
    """(ra, dec) in degrees from a FITS file's headers, or (None, None); raises
    :class:`_HeaderError` when the headers cannot be read."""
    from astropy.io import fits as afits

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with afits.open(path, memmap=False, lazy_load_hdus=True) as hdul:
                primary = hdul[0].header.copy()
                image_header = None
                if primary.get("NAXIS", 0) >= 2:
                    image_header = primary
                else:
                    for hdu in hdul[1:]:
                        if getattr(hdu, "is_image", False) and hdu.header.get("NAXIS", 0) >= 2:
                            image_header = hdu.header.copy()
                            break
    except MemoryError:
        raise
    except Exception as exc:  # astropy/gzip raise OSError, ValueError, TypeError, EOFError, IndexError…
        raise _HeaderError(f"{type(exc).__name__}: {short_error(exc, 200)}") from None

    coords = _keyword_coordinates(primary)
    if coords is not None:
        return coords
    for header in (primary, image_header):
        if header is not None:
            coords = _wcs_centre(header)
            if coords is not None:
                return coords
    return None, None


def _keyword_coordinates(header) -> tuple[float, float] | None:
    if "RA" not in header or "DEC" not in header:
        return None
    ra = _angle(header["RA"], hours=True)
    dec = _angle(header["DEC"], hours=False)
    if ra is None or dec is None:
        return None
    return ra, dec


def _angle(value, hours: bool) -> float | None:
    """A header angle in degrees: a number (degrees), or text in decimal degrees or sexagesimal
    (``hh:mm:ss`` for RA, ``dd:mm:ss`` for DEC)."""
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        pass
    try:
        import astropy.units as u
        from astropy.coordinates import Angle

        return float(Angle(str(value).strip(), unit=u.hourangle if hours else u.deg).deg)
    except Exception:  # unparseable text is "no coordinates"
        return None


def _wcs_centre(header) -> tuple[float, float] | None:
    try:
        from astropy.wcs import WCS

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wcs = WCS(header)
            if not wcs.has_celestial:
                return None
            cel = wcs.celestial
            nx, ny = header.get("NAXIS1"), header.get("NAXIS2")
            if not nx or not ny:
                return None
            sky = cel.pixel_to_world((nx - 1) / 2.0, (ny - 1) / 2.0).icrs
            ra, dec = float(sky.ra.deg), float(sky.dec.deg)
    except Exception:  # a broken WCS is "no coordinates", not an unreadable file
        return None
    if not (math.isfinite(ra) and math.isfinite(dec)):
        return None
    return ra, dec


__all__ = ["read_fits", "fits_id", "header_coordinates"]
