"""``morphcat bench-gpu`` (``benchmarks/gpu.sh``): on a machine without CUDA it says so and
measures the CPU, writing every figure; asked for CUDA where it cannot run, it refuses."""

from __future__ import annotations

import json

import pytest

from export.build.exporter import export_bundle
from export.serve.providers import cuda_unavailable_reason
from flows.cli import EXIT_BAD_INPUT

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")]


@pytest.mark.skipif(cuda_unavailable_reason() is None, reason="this machine can run CUDA: no fallback to test")
def test_without_cuda_the_gpu_bench_measures_the_cpu(tmp_path, tiny_models, morphcat):
    out = tmp_path / "gpu"
    export_bundle(tiny_models, out / "bundle-32", synthetic_images=8, fp16=True)  # spares the training
    proc = morphcat("bench-gpu", "--out", out, "--sizes", "32", "--batch", 4, "--n", 8)
    assert proc.returncode == 0, proc.stderr
    assert "no CUDA here" in proc.stdout and "| 32 px | 4 |" in proc.stdout
    s = json.loads((out / "gpu.json").read_text())
    assert s["device"] == "cpu" and s["cuda_unavailable"] == cuda_unavailable_reason()
    (row,) = s["image_graph"]
    assert row["provider"] == "CPUExecutionProvider" and row["fp32_ips"] > 0 and row["fp16_ips"] > 0
    assert row["fp16_speedup"] == pytest.approx(row["fp16_ips"] / row["fp32_ips"], abs=0.006)
    assert 0.0 <= row["fp16_class_agreement_here"] <= 1.0
    e = s["end_to_end"]
    assert e["n"] == 8 and e["annotate_ips"] > 0 and e["provider"] == "CPUExecutionProvider"
    slower, faster = sorted((e["decode_ips"], e["inference_ips"]))
    assert e["limit"] == ("decode" if e["decode_ips"] < e["inference_ips"] else "inference")
    assert e["limit_factor"] == pytest.approx(faster / slower, abs=0.006)
    assert (out / "runs" / "run1" / "predictions").is_dir()


@pytest.mark.skipif(cuda_unavailable_reason() is None, reason="this machine can run CUDA")
def test_the_gpu_bench_refuses_cuda_where_it_cannot_run(tmp_path, morphcat):
    proc = morphcat("bench-gpu", "--out", tmp_path / "gpu", "--device", "cuda")
    assert proc.returncode == EXIT_BAD_INPUT
    assert "CUDA cannot run here" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "gpu").exists()
