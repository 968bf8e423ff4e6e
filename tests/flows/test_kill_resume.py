"""kill -9 at random moments: ``morphcat annotate`` killed, rerun, must end byte-identical to an
uninterrupted run, with no partial, duplicate or staged file left (20 trials, seeded)."""

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

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")]

N, SHARD, TRIALS = 48, 3, 20  # 16 shards: many commit points to land between
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


def _annotate(catalog: Path, bundle: Path, out: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([EXE, "annotate", str(catalog), "--bundle", str(bundle), "--out", str(out),
                             "--shard-size", str(SHARD), "--batch-size", "2"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_for_a_shard(out: Path, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while not list(out.glob("predictions/run=*/shard-*.parquet")):
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before writing a shard"
        time.sleep(0.01)


def test_a_run_killed_at_random_moments_resumes_to_identical_output(setting, tiny_bundle, tmp_path):
    catalog, env, reference, duration = setting
    assert len(reference) == 2 * (N // SHARD)
    rng = random.Random(7)
    killed_with_some_shards = 0
    for trial in range(TRIALS):
        out = tmp_path / f"trial-{trial:02d}"
        proc = _annotate(catalog, tiny_bundle, out, env)
        if trial % 2:  # while shards are being written: after the first one, at a random moment
            _wait_for_a_shard(out, proc)
            time.sleep(rng.uniform(0.0, 0.8))
        else:  # anywhere in the run, start-up included
            time.sleep(rng.uniform(0.0, 1.0) * duration)
        proc.send_signal(signal.SIGKILL)
        proc.wait(60)
        left = _files(out) if out.exists() else {}
        assert set(left) <= set(reference), trial  # nothing but shard files of the plan
        assert all(left[name] == reference[name] for name in left), trial  # and each one whole
        killed_with_some_shards += 0 < len(left) < len(reference)
        again = _annotate(catalog, tiny_bundle, out, env)
        assert again.wait(600) == 0, trial
        assert _files(out) == reference, trial
        assert not any((out / ".staging").iterdir()), trial
    assert killed_with_some_shards >= 3  # the kills did land in the middle of runs
