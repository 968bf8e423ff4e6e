"""``morphcat bench`` on tiny inputs (what it measures is checked, never how fast it is), and its
pure parts on hand-made numbers."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from benchmarks.run import TARGETS, BenchSettings, derived, median_rate, repeated
from catalogs.contract import Catalog, read_catalog, write_catalog
from catalogs.synthetic import render_survey

KEYS = ("morphcat_ips", "keras_ips", "decode_ips", "ort_ips", "seed_caption_s_per_image",
        "morphcat_caption_s_per_image", "rss_n_mb", "rss_10n_mb", "n", "machine")


def _measured(**overrides) -> dict:
    r = {"morphcat_ips": 400.0, "keras_ips": 100.0, "decode_ips": 500.0, "ort_ips": 400.0,
         "seed_caption_s_per_image": 1.0, "morphcat_caption_s_per_image": 0.02, "rss_n_mb": 300.0,
         "rss_10n_mb": 360.0}
    return {**r, **overrides}


@pytest.mark.parametrize(("overrides", "name", "value", "met"), [
    ({}, "speedup_vs_keras", 4.0, True),
    ({"keras_ips": 101.0}, "speedup_vs_keras", 3.96, False),
    ({}, "efficiency", 1.0, True),  # bounded by the slower limit, onnxruntime here
    ({"ort_ips": 1000.0}, "efficiency", 0.8, False),  # now decoding (500/s) is the limit
    ({}, "caption_speedup", 50.0, True),
    ({"seed_caption_s_per_image": 0.9}, "caption_speedup", 45.0, False),
    ({}, "rss_ratio", 1.2, True),  # lower is better: 1.2 is still within the target
    ({"rss_10n_mb": 361.0}, "rss_ratio", 1.203, False),
])
def test_derived_ratios_and_targets(overrides, name, value, met):
    d = derived(_measured(**overrides))
    assert d[name] == pytest.approx(value, abs=1e-3)
    assert d["targets"][name]["met"] is met
    assert set(d["targets"]) == set(TARGETS)


class _Clock:
    """A stand-in for ``time.perf_counter`` that each timed call moves on by a given time."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_timer_leaves_the_warm_up_out_and_reports_rows_per_second(monkeypatch):
    from catalogs import timing

    clock, durations = _Clock(), iter([99.0, 0.5, 2.0, 1.0])  # the warm-up is the slow one

    def run():
        clock.now += next(durations)
        return 10

    monkeypatch.setattr(timing.time, "perf_counter", clock)
    rate, rates = median_rate(run, repeats=3)
    assert rates == [20.0, 5.0, 10.0] and rate == 10.0
    clock.now, durations = 0.0, iter([99.0, 0.5, 2.0, 1.0])
    assert timing.images_per_second(run, 8, repeats=3) == 16.0  # 8 images in the fastest call, 0.5 s
    with pytest.raises(ValueError, match="repeats"):
        timing.timed_rates(run, 0)


def test_repeated_catalog_reuses_images_under_new_ids(tmp_path):
    table = render_survey(tmp_path, n=3, seed=2, size=32, workers=1)
    catalog = repeated(Catalog(table, tmp_path, "synthetic"), 4)
    write_catalog(catalog, tmp_path / "c.parquet")  # passes the contract: ids unique
    back = read_catalog(tmp_path / "c.parquet").table
    assert back.num_rows == 12 and len(set(back.column("object_id").to_pylist())) == 12
    assert back.column("image_path").to_pylist() == table.column("image_path").to_pylist() * 4


def test_settings_below_one_are_refused():
    with pytest.raises(ValueError, match="repeats"):
        BenchSettings(repeats=0)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
def test_bench_measures_every_path_and_writes_its_results(tmp_path, tiny_models, morphcat):
    out = tmp_path / "bench"
    proc = morphcat("bench", "throughput", "--n", 6, "--out", out, "--models", tiny_models, "--repeats", 1, "--seed-images", 1,
                    "--batch-size", 4)
    assert proc.returncode == 0, proc.stderr
    r = json.loads((out / "results.json").read_text())
    assert set(KEYS) <= set(r)
    assert r["n"] == 6 and r["seed_images"] == 1 and r["machine"]["cores"] >= 1
    # Each headline rate is the median of its timed runs, the caption time the inverse of its rate.
    for key, rates in (("decode_ips", "decode"), ("ort_ips", "ort"), ("morphcat_ips", "morphcat"), ("keras_ips", "keras")):
        assert r[key] == float(np.median(r["rates"][rates])), key
    assert r["morphcat_caption_s_per_image"] == pytest.approx(1.0 / float(np.median(r["rates"]["captions"])))
    # The roofline: the counted FLOPs at the measured rate against the measured peak.
    assert r["peak_gflops"] == max(r["gemm_gflops"], r["conv_gflops"])
    assert r["ort_fraction_of_peak"] == pytest.approx(r["ort_ips"] * r["model_gflop_per_image"] / r["peak_gflops"],
                                                      abs=1e-3)
    assert r["pipeline_fraction_of_limit"] == r["efficiency_vs_serial_limit"]
    # The embedding's cost: the image graph timed with and without that output.
    assert r["image_graph_ips"] > 0 and r["image_graph_without_embedding_ips"] > 0
    assert r["embedding_cost_fraction"] == pytest.approx(
        1 - r["image_graph_ips"] / r["image_graph_without_embedding_ips"], abs=1e-3)
    assert (out / "runs" / "fixed" / "catalog.parquet").is_file()
    # The fixed costs: each its median after a warm-up (--repeats 1: two one-image runs).
    assert all(r[k] > 0 for k in ("fixed_seconds", "bundle_open_seconds", "catalog_open_seconds"))
    assert len(list((out / "runs" / "fixed").glob("run*"))) == 2
    assert set(r["targets"]) == set(TARGETS) and all(isinstance(t["met"], bool) for t in r["targets"].values())
    assert len(r["rates"]["morphcat"]) == 1
    # Every timed morphcat run and both memory runs annotated every row of their catalog.
    for run, rows in (("rep1", 6), ("rss-n", 6), ("rss-10n", 60)):
        assert pl.read_parquet(out / "runs" / run / "predictions" / "**" / "*.parquet").height == rows, run
    md = (out / "results.md").read_text()
    assert "| morphcat |" in md and "| Keras path |" in md and "peak RSS" in md and "embedding output" in md
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "results.md" in proc.stdout


def test_serial_limit_is_the_rate_of_decode_and_inference_taking_turns():
    d = derived(_measured())  # decode 500/s, onnxruntime 400/s: 2 ms + 2.5 ms per image
    assert d["serial_limit_ips"] == pytest.approx(222.2, abs=0.1)
    assert d["efficiency_vs_serial_limit"] == pytest.approx(400 / (1 / (1 / 500 + 1 / 400)), abs=1e-3)


def test_rss_at_reads_the_samples_at_their_fractions_of_the_run():
    from benchmarks.load import rss_at

    samples = [(0.0, 100.0), (1.0, 200.0), (5.0, 250.0), (9.0, 240.0), (10.0, 230.0)]
    assert rss_at(samples) == {"10%": 200.0, "50%": 250.0, "end": 230.0, "max": 250.0}
    assert rss_at([]) == {}


def test_memory_is_read_only_of_a_started_child():
    import os
    import subprocess
    import sys

    from benchmarks.load import _rss_mb

    own = [a.decode() for a in open(f"/proc/{os.getpid()}/cmdline", "rb").read().split(b"\0")[:-1]]
    assert _rss_mb(os.getpid(), own) > 0
    # the same process, but not (yet) the command it was asked to run: no sample
    assert _rss_mb(os.getpid(), [sys.executable, "-m", "benchmarks.child"]) is None
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    assert _rss_mb(done.pid, done.args) is None  # reaped: nothing to read


@pytest.mark.slow
def test_bench_load_accounts_for_every_row_and_samples_memory(tmp_path, tiny_bundle, morphcat):
    out = tmp_path / "load"
    proc = morphcat("bench", "load", "--bundle", tiny_bundle, "--out", out, "--rows", "90", "--images", "12",
                    "--size", "64", "--shard-size", "20")
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads((out / "load.json").read_text())
    s = r["summary"]
    assert (s["catalog_rows"], s["predictions"] + s["errors"], s["shards"]) == (90, 90, 5)
    ids = pl.read_parquet(out / "annotations" / "predictions" / "**" / "*.parquet")["object_id"]
    assert ids.n_unique() == 90 and ids.str.ends_with("-7").sum() == 6  # 12 images × 8 rounds, cut at 90
    assert r["rss_samples"] and all(rss > 0 for _, rss in r["rss_samples"])
    assert "90 catalog rows over 12 synthetic 64 px JPEGs" in proc.stdout
    assert (out / "load.png").stat().st_size > 0


def test_non_galaxy_images_are_of_every_kind_and_deterministic():
    from benchmarks.ood import SIDE, non_galaxy_images

    a, b = non_galaxy_images(3), non_galaxy_images(3)
    assert {k.split("/")[0] for k in a} == {"photo", "empty_sky", "sky_with_stars", "noise", "flat", "pattern"}
    assert all(v.shape == (SIDE, SIDE, 3) and v.dtype == np.uint8 for v in a.values())
    assert all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_bench_ood_reports_every_group(tmp_path, galaxy_bundle, morphcat):
    survey = tmp_path / "given"
    assert morphcat("synth", survey, "--n", "6", "--seed", "8", "--size", "96").returncode == 0
    proc = morphcat("bench", "ood", "--bundle", galaxy_bundle, "--out", tmp_path / "ood",
                    "--catalog", survey / "catalog.parquet", "--synthetic", "5")
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads((tmp_path / "ood" / "ood.json").read_text())
    rows = {g["group"]: g["rows"] for g in r["groups"]}
    assert rows == {"catalog": 6, "synthetic": 5, "non-galaxy": 22} and r["errors"] == 0
    kinds = {k["kind"]: k for k in r["kinds"]}
    assert kinds["flat"]["flagged"] == 3 and kinds["empty_sky"]["flagged"] == 4  # no source at the centre
    assert "| non-galaxy |" in proc.stdout
