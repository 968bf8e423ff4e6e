#!/usr/bin/env bash
# The GPU benchmark, one command on a machine with an NVIDIA GPU (CUDA 13, cuDNN 9):
#   benchmarks/gpu.sh [OUT]          (default OUT: gpu-bench/)
# Sets up .venv as the README does (nothing more is installed), then prints images/s of the image
# graph at batch 256 for 64, 128 and 224 px inputs in fp32 and float16, and annotate end to end
# beside decode alone. Without a usable GPU it says so and measures the CPU instead.
set -euo pipefail
cd "$(dirname "$0")/.."
make setup
exec .venv/bin/morphcat bench gpu --out "${1:-gpu-bench}"
