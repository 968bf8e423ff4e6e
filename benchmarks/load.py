"""``morphcat bench load``: does annotation memory stay flat on a large catalog?

A catalog of ``rows`` objects whose images are ``images`` synthetic cutouts reused through their
paths (ids suffixed, as :func:`benchmarks.run.repeated` makes them) is annotated by
``catalog-annotate`` in a fresh process, while this process samples that child's resident memory
(``VmRSS``) once a second. Reported: wall time, throughput, the child's peak RSS, the RSS at a
tenth, half and the end of the run (flat memory: the late samples no higher than the early
ones, within noise), and the row accounting of the run.

A sample is taken only of the started child: between ``fork`` and ``exec`` (``vfork`` on Linux)
``/proc/<pid>/status`` describes the parent's or no memory at all (``VmRSS: 0 kB``), so a reading
counts only once the child's command line is the benchmark's own and its ``VmRSS`` is positive.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from catalogs.atomic import atomic_path, write_text
from catalogs.contract import read_catalog, write_catalog
from catalogs.decoding import BATCH_SIZE
from catalogs.inputs import CUTOUT_SIZE
from catalogs.shards import SHARD_SIZE
from catalogs.synthetic import synthesize_survey

SAMPLE_SECONDS = 1.0
FIRST_SAMPLE_POLL_SECONDS = 0.02  # until the child has exec'd: the first sample comes early


def load_catalog(out: Path, rows: int, images: int, size: int, seed: int) -> Path:
    """``out/load-<rows>.parquet``: ``rows`` objects over ``images`` synthetic cutouts."""
    if rows < 1 or images < 1 or rows < images:
        raise ValueError(f"need rows ≥ images ≥ 1, got rows={rows}, images={images}")
    from benchmarks.run import repeated

    survey = out / "survey"
    catalog = survey / "catalog.parquet"
    if not catalog.is_file() or read_catalog(catalog).table.num_rows != images:
        synthesize_survey(out=survey, n=images, seed=seed, size=size, mix="gz2")
    path = out / f"load-{rows}.parquet"
    if not path.is_file():
        base = read_catalog(catalog)
        big = repeated(base, -(-rows // images))
        write_catalog(type(big)(big.table.slice(0, rows), big.root, big.source_format), path)
    return path


def _rss_mb(pid: int, command: list[str]) -> float | None:
    """The child's resident memory in MiB, or None when there is no true reading: the child has
    not exec'd ``command`` yet, has exited, or reports no (or zero) ``VmRSS``."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]
        if [a.decode(errors="replace") for a in argv] != command:
            return None
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                kib = int(line.split()[1])
                return kib / 1024 if kib > 0 else None
    except OSError:  # the child has exited
        return None
    return None


def run_load(out: Path, bundle: Path, rows: int, images: int, *, size: int = CUTOUT_SIZE, shard_size: int = SHARD_SIZE,
             batch_size: int = BATCH_SIZE, seed: int = 0) -> dict:
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    catalog = load_catalog(out, rows, images, size, seed)
    annotations = out / "annotations"
    command = [sys.executable, "-m", "benchmarks.child", str(catalog), str(Path(bundle).resolve()), str(annotations),
               str(batch_size), str(shard_size)]
    t0 = time.perf_counter()
    samples: list[tuple[float, float]] = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as child:
        while child.poll() is None:
            rss = _rss_mb(child.pid, command)
            if rss is not None:
                samples.append((round(time.perf_counter() - t0, 2), round(rss, 1)))
            time.sleep(SAMPLE_SECONDS if samples else FIRST_SAMPLE_POLL_SECONDS)
        stdout, stderr = child.communicate()
    wall = time.perf_counter() - t0
    if child.returncode != 0:
        raise RuntimeError(f"the annotate child failed ({child.returncode}): {stderr[-2000:]}")
    summary = json.loads(stdout.strip().splitlines()[-1])
    return {"rows": rows, "images": images, "size": size, "shard_size": shard_size, "batch_size": batch_size,
            "wall_seconds": round(wall, 1), "summary": summary, "rss_samples": samples,
            "rss_at": rss_at(samples), "catalog": str(catalog)}


def rss_at(samples: list[tuple[float, float]]) -> dict:
    """RSS (MiB) at 10 %, 50 % and 100 % of the run, and the largest sample."""
    if not samples:
        return {}
    end = samples[-1][0]

    def at(fraction: float) -> float:
        return next(rss for t, rss in samples if t >= fraction * end)

    return {"10%": at(0.1), "50%": at(0.5), "end": samples[-1][1], "max": max(r for _, r in samples)}


def load_markdown(r: dict) -> str:
    s, at = r["summary"], r["rss_at"]
    return "\n".join([
        f"{r['rows']:,} catalog rows over {r['images']:,} synthetic {r['size']} px JPEGs reused through their paths, "
        f"shards of {r['shard_size']}, batch {r['batch_size']}, in a fresh process:", "",
        "| | |", "|---|---:|",
        f"| wall time (process start to exit) | {r['wall_seconds']:.1f} s |",
        f"| in the flow | {s['seconds']:.1f} s, {s['images_per_second']:.1f} images/s on {s['provider']} |",
        f"| rows → predictions + errors | {s['catalog_rows']:,} → {s['predictions']:,} + {s['errors']:,} |",
        f"| peak RSS (VmHWM, the run's own) | {s['peak_rss_mb']:.0f} MiB |",
        f"| RSS at 10 % / 50 % / end of the run | {at['10%']:.0f} / {at['50%']:.0f} / {at['end']:.0f} MiB |",
    ]) + "\n"


def write_load_results(r: dict, out: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    paths = {"json": out / "load.json", "md": out / "load.md", "png": out / "load.png"}
    write_text(paths["json"], json.dumps(r, indent=2) + "\n")
    write_text(paths["md"], load_markdown(r))
    fig, ax = plt.subplots(figsize=(7, 3.2))
    t, rss = zip(*r["rss_samples"]) if r["rss_samples"] else ((), ())
    ax.plot(t, rss)
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("resident memory (MiB)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"catalog-annotate on {r['rows']:,} rows")
    fig.tight_layout()
    with atomic_path(paths["png"]) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return paths
