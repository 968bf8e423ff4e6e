"""The temporary Prefect server of a ``morphcat`` command run without ``PREFECT_API_URL``.

Prefect starts one on demand (``SubprocessASGIServer``, a ``uvicorn`` child) and stops it at a
normal exit, but a command killed from outside (SIGKILL, SIGTERM, an OOM kill) left it running,
re-parented to PID 1, ~220 MB each, forever; in the terminal's process group it also took Ctrl-C
and died at once while the command carried on without an API. And a Dask worker, whose tasks
came with the client's settings and so without an API URL, started a server of its own.

Here the command starts the server itself, before any flow, in its own session (a Ctrl-C or a
SIGTERM to the command's group reaches the command, which then stops the server) and under a
guard that ends it within a second of its parent's end, however that ends. The command's
Prefect settings and environment then name the server's URL, so every process that runs its
tasks (threads, process pools, Dask workers, which receive the client's settings with each task)
uses this one server and never starts another.

While the server is up, Prefect's console lines below WARNING are left out (unless
``PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL`` says otherwise): they link to a server that is gone when
the command ends and repeat what the command prints itself; the server keeps every run log.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

CONSOLE_LEVEL = "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"  # Prefect's override of its console handler
GUARD_PERIOD = 0.5  # s between the guard's looks at its parent
DRAIN_TIMEOUT = 5.0  # s for Prefect's log and event workers to send what they hold
SHUTDOWN_GRACE = 5.0  # s uvicorn gets to shut down after its parent ended, before a hard exit


def _server_class():
    from prefect.server.api.server import SubprocessASGIServer

    class GuardedServer(SubprocessASGIServer):
        """Prefect's temporary server, its ``uvicorn`` run by this module's guard in a new session."""

        def _run_uvicorn_command(self):
            import subprocess

            import prefect
            from prefect.settings import get_current_settings

            # Prefect 3.8's command and environment (server/api/server.py), behind the guard.
            uvicorn_args = ["--app-dir", str(prefect.__module_path__.parent), "--factory",
                            "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(self.port),
                            "--log-level", "error", "--lifespan", "on"]
            env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1",
                   "PREFECT__SERVER_FINAL": "1", **get_current_settings().to_environment_variables(exclude_unset=True)}
            return subprocess.Popen([sys.executable, "-m", __name__, str(os.getpid()), *uvicorn_args], env=env,
                                    start_new_session=True)

    return GuardedServer


def api_url_configured() -> bool:
    """Whether Prefect's settings name an API (``PREFECT_API_URL``): then no temporary server."""
    from prefect.settings import PREFECT_API_URL

    return bool(PREFECT_API_URL.value())


@contextmanager
def temporary_server() -> Iterator[str]:
    """Start a guarded temporary Prefect server and point this process's Prefect settings and
    environment (inherited by its child processes) at it; yields its API URL and stops it on the
    way out. The caller checks ``api_url_configured()`` first: a configured API is used as is."""
    from prefect.context import refresh_global_settings_context

    server = _server_class()(port=None)
    server.start()
    before = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = server.api_url
    refresh_global_settings_context()  # Prefect read its settings from the environment at import
    restore_console = _quiet_console()
    try:
        yield server.api_url
    finally:
        _drain_prefect_workers()
        server.stop()
        restore_console()
        if before is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = before
        refresh_global_settings_context()


def _quiet_console():
    """Prefect's console handlers at WARNING in this process, and in the processes it starts
    (through the environment: Prefect reads it at import); a function that undoes it."""
    import logging

    from prefect.logging.handlers import PrefectConsoleHandler

    if CONSOLE_LEVEL in os.environ:  # the user chose
        return lambda: None
    os.environ[CONSOLE_LEVEL] = "WARNING"
    loggers = [logging.getLogger(n) for n in list(logging.Logger.manager.loggerDict) if n.startswith("prefect")]
    handlers = {h for lg in loggers for h in lg.handlers if isinstance(h, PrefectConsoleHandler)}
    levels = {h: h.level for h in handlers}
    for h in handlers:
        h.setLevel(logging.WARNING)

    def restore() -> None:
        os.environ.pop(CONSOLE_LEVEL, None)
        for h, level in levels.items():
            h.setLevel(level)
    return restore


def _drain_prefect_workers() -> None:
    """Send what Prefect's background workers still hold (run logs, events) while the server is
    there to take it: Prefect drains them at interpreter exit, after the server would be gone."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        worker.drain_all(timeout=DRAIN_TIMEOUT)


def _watch_parent(parent: int) -> None:
    """End this process (the server) once ``parent`` is no longer its parent: it ended. SIGTERM
    first, which uvicorn answers with its graceful shutdown; a hard exit if that hangs."""
    while os.getppid() == parent:
        time.sleep(GUARD_PERIOD)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(SHUTDOWN_GRACE)
    os._exit(1)


if __name__ == "__main__":  # the server process: python -m flows.temporary_server PARENT_PID UVICORN_ARGS...
    threading.Thread(target=_watch_parent, args=(int(sys.argv[1]),), name="parent-guard", daemon=True).start()
    sys.argv = ["uvicorn", *sys.argv[2:]]
    runpy.run_module("uvicorn", run_name="__main__", alter_sys=True)
