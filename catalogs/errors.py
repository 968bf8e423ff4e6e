"""Errors raised at the catalog boundary, and the root of every user error.

:class:`MorphcatError` is what the CLI reports as one message with exit status 2 and no
traceback: something the user acts on (a catalog to fix, a model to re-train, a bundle to
re-export), never a bug. Each stage has its own subclasses: :class:`CatalogError` here (a
catalog or its source), ``models.errors.TrainingError``, ``export.builder.errors.ExportError``,
``export.serve.errors.BundleError``.

Every catalog error says what is wrong in words a user can act on: the column, the first
offending rows (by row number and ``object_id``), and how many rows in all. Nothing reaches the
user as a bare traceback from inside polars or pyarrow.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# How many offending rows a message quotes before summarising the rest.
MAX_QUOTED_ROWS = 5


class MorphcatError(ValueError):
    """A user error of any stage: reported as one message (exit status 2), never a traceback."""


class UsageError(MorphcatError):
    """Parameters that contradict each other or lack a companion. Its message names them in
    backticks (`shards`) when the library raises it; the command line shows its flags instead."""


class CatalogError(MorphcatError):
    """The catalog (or its source) cannot be used as it is."""


class UnknownFormatError(CatalogError):
    """A catalog format (or image file type) that morphcat does not read."""


class SourceError(CatalogError):
    """A source file is missing, unreadable, or lacks what its format requires."""


@dataclass(frozen=True)
class Problem:
    """One contract violation: what kind, which column, which rows."""

    code: str  # missing_column | wrong_type | unknown_column | null_values | duplicate_id |
    #            id_precision | out_of_range | empty
    column: str | None
    detail: str
    rows: tuple[int, ...] = ()
    ids: tuple[str, ...] = ()
    count: int = 0  # total offending rows (rows/ids quote only the first few)

    def __str__(self) -> str:
        where = f"column '{self.column}': " if self.column else ""
        text = f"{where}{self.detail}"
        if self.rows:
            quoted = ", ".join(
                f"row {r}" + (f" (object_id {i!r})" if i is not None else "")
                for r, i in zip(self.rows, self.ids or (None,) * len(self.rows))
            )
            more = f" and {self.count - len(self.rows)} more" if self.count > len(self.rows) else ""
            text += f" [{self.count} row(s): {quoted}{more}]"
        return text


@dataclass(repr=False)
class ContractViolation(CatalogError):
    """All the ways a table breaks the catalog contract, collected before raising."""

    problems: list[Problem] = field(default_factory=list)
    source: str = "catalog"

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __repr__(self) -> str:  # what Prefect's one-line failure logs show
        return f"{type(self).__name__}({self.source!r}: {', '.join(sorted(self.codes))})"

    @property
    def codes(self) -> set[str]:
        return {p.code for p in self.problems}

    def __str__(self) -> str:
        lines = [f"{self.source} breaks the morphcat catalog contract ({len(self.problems)} problem(s)):"]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


class PathEscapeError(CatalogError):
    """An image path that points outside the catalog's root folder."""
