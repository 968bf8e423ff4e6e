"""Which arithmetic training runs in: bfloat16 mixed precision where the CPU multiplies bfloat16
in hardware, float32 elsewhere.

Under ``mixed_bfloat16`` the layers compute in bfloat16 while every variable stays float32, so the
trained weights are float32 either way: training rebuilds the models in float32 and copies the
weights in (``models.train``), and what is saved, exported and served never sees bfloat16. The
outputs (logits, softmax, the decision tree) are float32 layers in both cases.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

PRECISIONS = ("auto", "float32", "bfloat16")
# The instruction sets the speed of convolutions depends on: benchmarks quote figures with them.
SPEED_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
# Either gives oneDNN bfloat16 kernels (AVX-512 BF16 dot products, AMX tiles); without them
# bfloat16 is emulated and slower than float32.
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags() -> list[str]:
    """Which of ``SPEED_FLAGS`` this CPU reports (Linux ``/proc/cpuinfo``; empty elsewhere)."""
    try:
        line = next(x for x in Path("/proc/cpuinfo").read_text().splitlines() if x.startswith("flags"))
    except (OSError, StopIteration):
        return []
    have = set(line.split(":", 1)[1].split())
    return [f for f in SPEED_FLAGS if f in have]


def training_precision(requested: str, flags: list[str] | None = None) -> str:
    """``"float32"`` or ``"bfloat16"`` for a requested precision: ``auto`` picks bfloat16 only where
    the CPU has one of ``BF16_FLAGS``."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {requested!r}")
    if requested != "auto":
        return requested
    flags = cpu_flags() if flags is None else flags
    return "bfloat16" if any(f in flags for f in BF16_FLAGS) else "float32"


@contextmanager
def dtype_policy(precision: str):
    """Layers built inside compute in ``precision`` (``"bfloat16"``: Keras' ``mixed_bfloat16``)."""
    import keras

    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16" if precision == "bfloat16" else "float32")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)
