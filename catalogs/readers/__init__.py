"""Readers: every supported source → a :class:`~catalogs.contract.Catalog`.

``read_source(src, fmt, **options)`` dispatches on ``fmt`` through :data:`FORMATS`:

========  ===================================================================================
format    source
========  ===================================================================================
gz2       Galaxy Zoo 2: the public release folder (``gz2_hart16.csv[.gz]`` +
          ``gz2_filename_mapping.csv`` + ``images/``) or one CSV with Hart16 columns and
          ``asset_id``/``filepath`` (see :mod:`catalogs.readers.gz2`)
kaggle    Kaggle Galaxy Challenge: ``training_solutions_rev1.csv`` + ``images_training_rev1/``
          (see :mod:`catalogs.readers.kaggle`)
folder    a folder of JPEG/PNG/TIFF images, or a CSV/Parquet manifest with id and path columns
          (options ``id_column``, ``path_column``; see :mod:`catalogs.readers.folder`)
fits      a folder of FITS cutouts (see :mod:`catalogs.readers.fits`)
hats      a HATS catalog (LSDB), its image paths relative to ``images`` (see :mod:`catalogs.readers.hats`)
========  ===================================================================================

Every reader returns a :class:`ReadResult`. Every source row ends up either in the catalog or
in ``skipped`` with a reason; nothing is dropped silently. Readers do not compute labels or
captions and do not open image files (ingest does both). ``source_row`` in ``skipped`` is the
0-based index of the row in the source table (the header line not counted), or of the file in
the sorted file listing for folder sources.

Readers let no bare polars/pyarrow/astropy exception escape: a problem with the source is a
:class:`~catalogs.errors.SourceError` naming the file and what is wrong; a table that breaks the
catalog contract is a :class:`~catalogs.errors.ContractViolation`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

from catalogs.errors import CatalogError, UnknownFormatError
from catalogs.readers import fits, folder, gz2, hats, kaggle
from catalogs.readers.common import SKIPPED_SCHEMA, ReadResult

Reader = Callable[..., ReadResult]
FORMATS: dict[str, Reader] = {
    "gz2": gz2.read_gz2,
    "kaggle": kaggle.read_kaggle,
    "folder": folder.read_folder,
    "fits": fits.read_fits,
    "hats": hats.read_hats,
}


def read_source(src: Path, fmt: str, **options) -> ReadResult:
    """Read ``src`` as format ``fmt``. Options a format does not take are an error unless their
    value is ``None`` (so a CLI may pass ``id_column=None`` to every format)."""
    name = str(fmt).strip().lower()
    reader = FORMATS.get(name)
    if reader is None:
        raise UnknownFormatError(f"unknown catalog format {fmt!r}; valid formats: {', '.join(sorted(FORMATS))}")
    accepted = set(inspect.signature(reader).parameters) - {"src"}
    unknown = sorted(k for k, v in options.items() if k not in accepted and v is not None)
    if unknown:
        raise CatalogError(f"format {name!r} takes no option(s) {', '.join(unknown)}"
                           f"{'; it takes ' + ', '.join(sorted(accepted)) if accepted else ''}")
    kwargs = {k: v for k, v in options.items() if k in accepted and v is not None}
    return reader(Path(src), **kwargs)


__all__ = ["FORMATS", "ReadResult", "SKIPPED_SCHEMA", "read_source"]
