"""``morphcat bench gpu`` (``benchmarks/gpu.sh``): on a machine with CUDA it measures the GPU; on
one without, it says so and measures the CPU, writing every figure; asked for CUDA where it
cannot run, it refuses. Each test runs where its case can happen and says why it skips elsewhere."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from export.builder.exporter import export_bundle
from export.serve.bundle import IMAGE_INPUT, MERGED_NAME, read_manifest
from export.serve.providers import CPU, CUDA, cuda_unavailable_reason
from flows.cli import EXIT_BAD_INPUT

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")]

NO_CUDA = cuda_unavailable_reason()


def _fp16_agreement(bundle, batch: int, providers: list[str]) -> float:
    """float16's class agreement with fp32 on the bench's inputs (seed 0), computed apart from it."""
    manifest = read_manifest(bundle)
    size = manifest["image"]["size"]
    x = np.random.default_rng(0).random((batch, size, size, 3), np.float32)
    classes = [ort.InferenceSession(str(bundle / f), providers=providers).run(["probs"], {IMAGE_INPUT: x})[0].argmax(1)
               for f in (f"{MERGED_NAME}.onnx", manifest["fp16"]["file"])]
    return float(np.mean(classes[0] == classes[1]))


def _bench_measures(tmp_path, tiny_models, morphcat, device: str, provider: str) -> tuple[dict, str]:
    out = tmp_path / "gpu"
    export_bundle(tiny_models, out / "bundle-32", synthetic_images=8, fp16=True)  # spares the training
    proc = morphcat("bench", "gpu", "--out", out, "--sizes", "32", "--batch", 4, "--n", 8, "--device", device)
    assert proc.returncode == 0, proc.stderr
    assert "| 32 px | 4 |" in proc.stdout
    s = json.loads((out / "gpu.json").read_text())
    (row,) = s["image_graph"]
    assert row["provider"] == provider and row["fp32_ips"] > 0 and row["fp16_ips"] > 0
    assert row["fp16_speedup"] == pytest.approx(row["fp16_ips"] / row["fp32_ips"], abs=0.006)
    providers = [provider] if provider == CPU else [provider, CPU]
    assert row["fp16_class_agreement_here"] == _fp16_agreement(out / "bundle-32", 4, providers)
    e = s["end_to_end"]
    assert e["n"] == 8 and e["annotate_ips"] > 0 and e["provider"] == provider
    slower, faster = sorted((e["decode_ips"], e["inference_ips"]))
    assert e["limit"] == ("decode" if e["decode_ips"] < e["inference_ips"] else "inference")
    assert e["limit_factor"] == pytest.approx(faster / slower, abs=0.006)
    assert (out / "runs" / "run1" / "predictions").is_dir()
    return s, proc.stdout


@pytest.mark.skipif(NO_CUDA is None, reason="this machine can run CUDA: the fallback to the CPU cannot happen here")
def test_without_cuda_the_gpu_bench_measures_the_cpu(tmp_path, tiny_models, morphcat):
    s, stdout = _bench_measures(tmp_path, tiny_models, morphcat, "auto", CPU)
    assert "no CUDA here" in stdout
    assert s["device"] == "cpu" and s["cuda_unavailable"] == NO_CUDA


@pytest.mark.skipif(NO_CUDA is not None, reason=f"no CUDA here: {NO_CUDA}")
def test_with_cuda_the_gpu_bench_measures_the_gpu(tmp_path, tiny_models, morphcat):
    s, stdout = _bench_measures(tmp_path, tiny_models, morphcat, "cuda", CUDA)
    assert "no CUDA here" not in stdout
    assert s["device"] == "cuda" and s["cuda_unavailable"] is None


@pytest.mark.skipif(NO_CUDA is None, reason="this machine can run CUDA: there is nothing to refuse")
def test_the_gpu_bench_refuses_cuda_where_it_cannot_run(tmp_path, morphcat):
    proc = morphcat("bench", "gpu", "--out", tmp_path / "gpu", "--device", "cuda")
    assert proc.returncode == EXIT_BAD_INPUT
    assert "CUDA cannot run here" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "gpu").exists()
