"""Command-line value types shared by the ``morphcat`` command and its benchmark registry: each
turns one argument's text into a value, or says in one line what is wrong with it."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be ≥ 1, got {value}")
    return value


def names(text: str) -> list[str]:
    """``"classifier, regressor"`` → ``["classifier", "regressor"]`` (empty items dropped)."""
    return [k.strip() for k in text.split(",") if k.strip()]


def whole_numbers(text: str) -> list[int]:
    """``"10000,1000000"`` → ``[10000, 1000000]``."""
    return [int(x) for x in names(text)]
