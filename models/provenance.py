"""Which code made a result: the git commit of this checkout, recorded beside cross-validation
folds, ledger lines and benchmark results so that a number can be traced to the code behind it."""

from __future__ import annotations

import subprocess
from pathlib import Path


def code_commit() -> str:
    """The checkout's commit (``+dirty`` with uncommitted changes to tracked files), or
    ``"unknown"`` outside a git checkout (an installed wheel)."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
