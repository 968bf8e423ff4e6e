"""``morphcat bench decode``: what decoding at reduced JPEG scale saves, and what it changes.

For each folder of JPEG cutouts and each framing (``galaxy``, the default, and ``fixed``),
``catalogs.inputs.model_input`` runs over the same files (one thread, after a warm-up pass) with
the DCT-domain reduction (``draft``) and with a full decode: images/s of both, the share of
files the reduction applies to, and how far the model inputs move (mean and max absolute
difference in 0–255 levels, against the full decode). The crop is always taken before the
resize, from the decoded pixels the crop covers.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks.report import write_summary
from benchmarks.run import machine, machine_line
from catalogs.errors import MorphcatError
from catalogs.inputs import ImageSpec, model_input

FRAMINGS = ("galaxy", "fixed")
JPEG_SUFFIXES = (".jpg", ".jpeg")


def _decode_all(files: list[Path], spec: ImageSpec, draft: bool) -> tuple[float, list]:
    for path in files[:10]:  # warm-up: page cache, Pillow's plugins
        model_input(path, spec, draft=draft)
    t0 = time.perf_counter()
    got = [model_input(path, spec, draft=draft) for path in files]
    return len(files) / (time.perf_counter() - t0), got


def measure_folder(folder: Path, n: int, spec: ImageSpec) -> dict:
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in JPEG_SUFFIXES)[:n]
    if not files:
        raise MorphcatError(f"no JPEG file ({', '.join(JPEG_SUFFIXES)}) under {folder}")
    rows = {}
    for framing in FRAMINGS:
        s = replace(spec, framing=framing)
        full_ips, full = _decode_all(files, s, draft=False)
        draft_ips, drafted = _decode_all(files, s, draft=True)
        diff = np.stack([np.abs(a.pixels.astype(np.int16) - b.pixels.astype(np.int16)) for a, b in zip(drafted, full)])
        rows[framing] = {"full_decode_ips": round(full_ips, 1), "draft_ips": round(draft_ips, 1),
                         "speedup": round(draft_ips / full_ips, 2),
                         "drafted_fraction": round(float(np.mean([m.draft_scale > 1 for m in drafted])), 3),
                         "mean_abs_diff": round(float(diff.mean()), 3), "max_abs_diff": int(diff.max())}
    return {"folder": str(folder), "files": len(files), "source_size": full[0].source_size, "framings": rows}


def run_decode_bench(out: Path, folders: list[Path], n: int = 300, size: int | None = None) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    spec = ImageSpec() if size is None else ImageSpec(size=size)
    summary = {"machine": machine(), "image_size": spec.size,
               "folders": [measure_folder(Path(f), n, spec) for f in folders]}
    lines = [f"Machine: {machine_line(summary['machine'])}; one thread; model input {spec.size} px.", "",
             "| cutouts | framing | full decode images/s | reduced-scale images/s | speed-up | files reduced | "
             "input change mean / max (levels) |", "|---|---|---:|---:|---:|---:|---:|"]
    for f in summary["folders"]:
        w, h = f["source_size"]
        for framing, r in f["framings"].items():
            lines.append(f"| {f['files']} × {w}×{h} px ({Path(f['folder']).name}) | {framing} | {r['full_decode_ips']:g} | "
                         f"{r['draft_ips']:g} | ×{r['speedup']:g} | {r['drafted_fraction']:.0%} | "
                         f"{r['mean_abs_diff']:.2f} / {r['max_abs_diff']} |")
    return write_summary(out, "decode", summary, "\n".join(lines) + "\n")
