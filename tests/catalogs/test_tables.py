"""Result tables never shorten ids: piped, they are CSV; in a narrow terminal the other columns
fold first."""

from __future__ import annotations

import io
import re

import polars as pl

from catalogs.tables import print_table

TABLE = pl.DataFrame({
    "rank": [1, 2],
    "object_id": ["587742015000000001", "1237648720693755918"],  # SDSS-length ids
    "score": [2.718281828, 1.5],
    "reason": ["isolated in the embedding (2.1 × the run's typical distance), unlike the training galaxies",
               "unlike the training galaxies (out-of-distribution score 3.2)"],
})


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_piped_the_table_is_csv_with_every_value_whole():
    out = io.StringIO()
    print_table(TABLE, out)
    assert out.getvalue() == TABLE.write_csv()
    back = pl.read_csv(io.StringIO(out.getvalue()), schema_overrides={"object_id": pl.String})
    assert back["object_id"].to_list() == TABLE["object_id"].to_list()


def _rows(lines: list[str]) -> list[list[str]]:
    """The drawn table's rows, each cell's folded pieces joined (a new row starts where rank does)."""
    rows: list[list[str]] = []
    for line in lines:
        if line.startswith("│"):
            cells = [c.strip() for c in line.split("│")[1:-1]]
            if cells[0]:
                rows.append(cells)
            else:
                rows[-1] = [a + b for a, b in zip(rows[-1], cells)]
    return rows


def test_in_a_narrow_terminal_the_other_columns_fold_first(monkeypatch):
    for columns in (80, 40):
        monkeypatch.setenv("COLUMNS", str(columns))
        out = Terminal()
        print_table(TABLE, out)
        lines = re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue()).splitlines()  # without the colours
        assert max(len(line) for line in lines) <= columns
        for object_id in TABLE["object_id"]:
            assert any(object_id in line for line in lines), (columns, object_id)  # on one line, whole
        rows = _rows(lines)
        assert [r[1] for r in rows] == TABLE["object_id"].to_list()
        assert [r[2] for r in rows] == ["2.7183", "1.5000"]  # folded, not cut
        assert [r[3].replace(" ", "") for r in rows] == [t.replace(" ", "") for t in TABLE["reason"]]
