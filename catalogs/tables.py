"""Printing a result table (``morphcat similar``, ``unusual``) for whoever reads it: ids, the
values a user copies, are never shortened.

In a terminal the table is drawn with every id column as wide as its longest id; the other
columns wrap and fold to fit the width first. Anywhere else (a pipe, a file) it is plain CSV with
a header row and every value whole, for ``grep``, ``cut`` or a CSV reader.
"""

from __future__ import annotations

import sys
from typing import TextIO

import polars as pl

ID_COLUMNS = ("object_id",)


def print_table(table: pl.DataFrame, out: TextIO | None = None) -> None:
    out = sys.stdout if out is None else out
    if not out.isatty():
        out.write(table.write_csv())
        out.flush()
        return
    from rich.console import Console
    from rich.table import Table

    shown = Table()
    for name in table.columns:
        if name in ID_COLUMNS:
            shown.add_column(name, no_wrap=True, min_width=max(len(str(v)) for v in [name, *table[name]]))
        else:
            shown.add_column(name, overflow="fold")
    for row in table.iter_rows():
        shown.add_row(*("" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v) for v in row))
    Console(file=out).print(shown)
