"""kill -9 at random moments: ``morphcat annotate`` killed, rerun, must end byte-identical to an
uninterrupted run, with no partial, duplicate or staged file left (12 trials, seeded: each is a
kill and a rerun, two fresh processes, ~6 s; the suite's time budget sets the count).

Half the kills land at a random time (start-up included); the other half land between two
commit renames of the shard files, chosen at random and made exact by the process killing itself
with SIGKILL just before its k-th rename: where those land does not depend on the machine's
speed, so every one of them is known to leave a half-written run behind."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from catalogs.contract import Catalog, write_catalog
from catalogs.synthetic import render_survey
from tests.flows.processes import alive, left_after, tagged

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")]

N, SHARD, TRIALS = 48, 3, 12  # 16 shards: many commit points to land between
EXE = str(Path(sys.executable).with_name("morphcat"))


def _files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*.parquet"))
            if ".staging" not in p.parts}


@pytest.fixture(scope="module")
def setting(tmp_path_factory, tiny_bundle, morphcat):
    """The catalog, the environment of the test Prefect API, an uninterrupted run's files and
    how long that run took."""
    from prefect.settings import PREFECT_API_URL

    root = tmp_path_factory.mktemp("kill") / "survey"
    table = render_survey(root, n=N, seed=31, size=64, mix="balanced", workers=1)
    write_catalog(Catalog(table, root, "synthetic"), root / "catalog.parquet")
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    ref = root.parent / "reference"
    start = time.monotonic()
    proc = _annotate(root / "catalog.parquet", tiny_bundle, ref, env)
    assert proc.wait(600) == 0
    return root / "catalog.parquet", env, _files(ref), time.monotonic() - start


# `morphcat annotate` whose process SIGKILLs itself just before its k-th rename of a shard file
# into a run folder (k = 0: never). Nothing else is changed.
_KILLED_AT_RENAME = """
import os, signal, sys
from flows.cli import main
kill_at, calls, real = int(sys.argv[1]), [0], os.replace
def replace(src, dst):
    if os.path.basename(os.path.dirname(os.fspath(dst))).startswith("run="):
        calls[0] += 1
        if calls[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    real(src, dst)
os.replace = replace
sys.exit(main(sys.argv[2:]))
"""


def _annotate(catalog: Path, bundle: Path, out: Path, env: dict, kill_at_rename: int = 0) -> subprocess.Popen:
    args = ["annotate", str(catalog), "--bundle", str(bundle), "--out", str(out), "--shard-size", str(SHARD),
            "--batch-size", "2"]
    command = [sys.executable, "-c", _KILLED_AT_RENAME, str(kill_at_rename), *args] if kill_at_rename else [EXE, *args]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_a_run_killed_at_random_moments_resumes_to_identical_output(setting, tiny_bundle, tmp_path):
    catalog, env, reference, duration = setting
    assert len(reference) == 2 * (N // SHARD)
    rng = random.Random(7)
    for trial in range(TRIALS):
        out = tmp_path / f"trial-{trial:02d}"
        if trial % 2:  # while shards are being written: just before the k-th of the 2 renames per shard
            k = rng.randint(2, len(reference))
            proc = _annotate(catalog, tiny_bundle, out, env, kill_at_rename=k)
        else:  # anywhere in the run, start-up included
            proc = _annotate(catalog, tiny_bundle, out, env)
            time.sleep(rng.uniform(0.0, 1.0) * duration)
            proc.send_signal(signal.SIGKILL)
        assert proc.wait(600) == -signal.SIGKILL or not trial % 2, trial
        left = _files(out) if out.exists() else {}
        assert set(left) <= set(reference), trial  # nothing but shard files of the plan
        assert all(left[name] == reference[name] for name in left), trial  # and each one whole
        if trial % 2:  # k − 1 renames were made: a run cut in its middle, whatever the machine's speed
            assert len(left) == k - 1, trial
        again = _annotate(catalog, tiny_bundle, out, env)
        assert again.wait(600) == 0, trial
        assert _files(out) == reference, trial
        assert not any((out / ".staging").iterdir()), trial


def test_a_killed_run_leaves_no_process_behind(setting, tiny_bundle, tmp_path):
    """Without PREFECT_API_URL the command starts its own temporary Prefect server. Killed with
    SIGKILL mid-run (at its 5th shard-file rename), nothing it started may outlive it by more
    than a few seconds, the server included; the rerun still ends identical."""
    catalog, env, reference, _ = setting
    own = {k: v for k, v in env.items() if k != "PREFECT_API_URL"} | {"PREFECT_HOME": str(tmp_path / "prefect")}
    own, tag = tagged(own)
    out = tmp_path / "out"
    proc = _annotate(catalog, tiny_bundle, out, own, kill_at_rename=5)
    server_seen = []
    while proc.poll() is None:  # the server is there while the run is: it serves it
        server_seen += [p for p in alive(tag) if "prefect.server.api.server:create_app" in p]
        time.sleep(0.2)
    assert proc.returncode == -signal.SIGKILL
    assert server_seen, "the run started no temporary server: nothing was tested"
    assert left_after(tag, 15) == []
    assert 0 < len(_files(out)) < len(reference)  # killed mid-run
    again = _annotate(catalog, tiny_bundle, out, env)
    assert again.wait(600) == 0
    assert _files(out) == reference
