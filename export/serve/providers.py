"""Which onnxruntime execution provider can run here: CUDA when it really can, else CPU.

The ``onnxruntime-gpu`` wheel lists ``CUDAExecutionProvider`` on every machine, and asking for it
where the CUDA 13 / cuDNN 9 libraries or a GPU are missing logs an ERROR before falling back. So
CUDA is requested only after checking, quietly, what the provider needs: a driver with at least
one device, and every CUDA and cuDNN library the provider loads (tried from the default library
path, then from NVIDIA's pip wheels, as ``onnxruntime.preload_dlls`` does, which however prints
its failures).
"""

from __future__ import annotations

import ctypes
import functools
import glob
import os
import sysconfig

import onnxruntime as ort

from export.serve.errors import DeviceUnavailableError

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
CUDNN = "libcudnn.so.9"  # onnxruntime-gpu 1.31 requires cuDNN 9 (its own error message says so)
CURAND = "libcurand.so.10"  # the same soname in CUDA 12 and 13
DEVICES = ("auto", "cpu", "cuda")

_loaded: list[ctypes.CDLL] = []  # keep preloaded libraries alive for the provider to find


def _cuda_major() -> str:
    from onnxruntime.capi import build_and_package_info

    return str(getattr(build_and_package_info, "cuda_version", "") or "").split(".")[0]


def _wheel_library(name: str) -> str | None:
    """``name`` inside NVIDIA's pip wheels (``nvidia/cu13/lib``, ``nvidia/cudnn/lib``…), if installed."""
    for root in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}:
        hits = sorted(glob.glob(os.path.join(root, "nvidia", "*", "lib", name)))
        if hits:
            return hits[0]
    return None


def _load(name: str) -> str | None:
    """Load a shared library globally; None on success, else why not."""
    errors = []
    for candidate in (name, _wheel_library(name)):
        if candidate is None:
            continue
        try:
            _loaded.append(ctypes.CDLL(candidate, mode=ctypes.RTLD_GLOBAL))
            return None
        except OSError as exc:
            errors.append(str(exc))
    return errors[-1] if errors else f"{name} not found"


def _gpu_count() -> tuple[int, str | None]:
    try:
        driver = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0, "no NVIDIA driver (libcuda.so.1 not found)"
    count = ctypes.c_int(0)
    if driver.cuInit(0) != 0 or driver.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return 0, "the NVIDIA driver found no usable GPU"
    return count.value, None if count.value else "the NVIDIA driver reports no GPU"


@functools.cache
def cuda_unavailable_reason() -> str | None:
    """None when onnxruntime's CUDA provider can run here, else a short reason. Checked once."""
    if CUDA not in ort.get_available_providers():
        return "this onnxruntime build has no CUDA provider"
    count, why = _gpu_count()
    if not count:
        return why
    major = _cuda_major()
    if not major.isdigit():
        return "this onnxruntime build does not say which CUDA version it needs"
    # What libonnxruntime_providers_cuda.so links against (readelf -d: cudart, cublasLt, cublas,
    # curand of its CUDA major) plus cuDNN, which it opens later. Loading them here, from the
    # default path or NVIDIA's wheels, is also what lets the provider find them.
    for lib in (f"libcudart.so.{major}", f"libcublasLt.so.{major}", f"libcublas.so.{major}", CURAND, CUDNN):
        problem = _load(lib)
        if problem is not None:
            return f"{lib} cannot be loaded ({problem}); the CUDA provider needs CUDA {major} and cuDNN 9"
    return None


def choose_providers(device: str) -> list[str]:
    """Providers to request, best first. ``device``: ``auto`` (CUDA when it can run, else CPU),
    ``cpu``, or ``cuda`` (raises :class:`~export.serve.errors.DeviceUnavailableError` when it cannot)."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if device == "cpu":
        return [CPU]
    reason = cuda_unavailable_reason()
    if reason is None:
        return [CUDA, CPU]
    if device == "cuda":
        raise DeviceUnavailableError(f"device='cuda' asked for, but CUDA cannot run here: {reason}")
    return [CPU]
