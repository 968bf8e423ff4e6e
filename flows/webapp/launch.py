"""The ``streamlit run`` command line of ``morphcat app``, the arguments the app script reads, and
running the server until it stops.

Streamlit runs ``app.py`` in its own process; the bundle, annotations and catalog paths reach
it as script arguments after ``--`` (``streamlit run app.py [options] -- --bundle …``).
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from pathlib import Path

from flows.webapp.analysis import MAX_UPLOAD_MB

DEFAULT_ADDRESS = "127.0.0.1"
DEFAULT_PORT = 8501


def app_script() -> Path:
    return Path(__file__).with_name("app.py")


def script_arguments(bundle: Path, annotations: Path | None = None, catalog: Path | None = None) -> list[str]:
    """What ``app.py`` receives (absolute paths: Streamlit may change the working folder)."""
    args = ["--bundle", str(Path(bundle).resolve())]
    if annotations is not None:
        args += ["--annotations", str(Path(annotations).resolve())]
    if catalog is not None:
        args += ["--catalog", str(Path(catalog).resolve())]
    return args


def parse_script_arguments(argv: list[str]) -> argparse.Namespace:
    """``app.py``'s side of :func:`script_arguments`."""
    parser = argparse.ArgumentParser(prog="morphcat app (streamlit script)")
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--annotations", type=Path, default=None)
    parser.add_argument("--catalog", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.catalog is not None and args.annotations is None:
        parser.error("--catalog names the images of --annotations: give --annotations too")
    return args


def check_inputs(bundle: Path, annotations: Path | None = None, catalog: Path | None = None) -> str | None:
    """Refuse a bad bundle or annotations folder before the server starts, as one message rather
    than on the first page view; returns why the gallery will have no thumbnails, if it will not."""
    from catalogs.errors import CatalogError, UsageError
    from export.serve.runtime import open_bundle
    from flows.webapp.catalog_view import locate_catalog, open_annotations

    if catalog is not None and annotations is None:
        raise UsageError("`catalog` names the images of an annotations folder: give `annotations` too")
    open_bundle(bundle, device="cpu", require=("classifier",))
    if annotations is None:
        return None
    folder = open_annotations(annotations)
    if catalog is not None:
        locate_catalog(folder, catalog)
        return None
    try:
        locate_catalog(folder)
    except CatalogError as exc:
        return str(exc)
    return None


def streamlit_command(bundle: Path, annotations: Path | None = None, catalog: Path | None = None, *,
                      port: int = DEFAULT_PORT, address: str = DEFAULT_ADDRESS) -> list[str]:
    """The command that serves the app: this Python's streamlit, listening on ``address:port``
    only, headless (no browser opened), without usage statistics, a file watcher (the installed
    script does not change while it is served) or developer menus, uploads capped at
    ``MAX_UPLOAD_MB``."""
    if not 1 <= port <= 65535:
        raise ValueError(f"port must be in 1…65535, got {port}")
    return [sys.executable, "-m", "streamlit", "run", str(app_script()),
            "--server.address", address, "--server.port", str(port),
            "--server.maxUploadSize", str(MAX_UPLOAD_MB), "--server.headless", "true",
            "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false",
            "--client.toolbarMode", "minimal",
            "--", *script_arguments(bundle, annotations, catalog)]


def run_server(command: list[str]) -> None:
    """Run ``command`` (the server) until it stops. SIGTERM (a service manager's) is passed on to
    it rather than orphaning it; Ctrl-C reaches it too, and it is let finish. Raises
    ``SystemExit`` with its status when it fails on its own."""
    proc = subprocess.Popen(command)
    stopped = []

    def stop(signum, frame):
        stopped.append(signum)
        proc.send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        stopped.append(signal.SIGINT)
        code = proc.wait()
    if code and not stopped:
        raise SystemExit(code)
