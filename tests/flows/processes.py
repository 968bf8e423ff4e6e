"""Every process a command started, however deep and wherever it was re-parented: the test puts a
tag in the command's environment, which its children inherit (its ``uvicorn`` server included)."""

from __future__ import annotations

import time
import uuid

import psutil

TAG = "MORPHCAT_TEST_PROCESS_TAG"


def tagged(env: dict[str, str]) -> tuple[dict[str, str], str]:
    """``env`` with a fresh tag, and the tag."""
    tag = uuid.uuid4().hex
    return {**env, TAG: tag}, tag


def alive(tag: str) -> list[str]:
    """``"PID COMMAND LINE"`` of each live process carrying ``tag`` (zombies are dead)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and proc.environ().get(TAG) == tag:
                found.append(f"{proc.pid} {' '.join(proc.cmdline())}")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


def left_after(tag: str, seconds: float) -> list[str]:
    """The processes carrying ``tag`` still alive ``seconds`` from now (sooner when none is)."""
    deadline = time.monotonic() + seconds
    while (found := alive(tag)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return found
