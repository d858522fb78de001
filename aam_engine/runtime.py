"""Device, precision and compile decisions, made once with clear messages."""
from __future__ import annotations

import contextlib
import warnings

import torch


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was requested but no CUDA GPU is visible to PyTorch "
                         f"(torch {torch.__version__}, CUDA build: {torch.version.cuda}). Use "
                         "device 'auto' or 'cpu', or install a CUDA build of PyTorch.")
    return torch.device(name)


def resolve_precision(name: str, device: torch.device) -> str:
    """'auto': bf16 on GPUs that support it, fp16 (+ GradScaler) on older GPUs, fp32 on CPU."""
    if name == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "fp32"
    return name


def autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def maybe_compile(module, enabled: bool):
    """torch.compile when asked; falls back to eager (with a warning) where unsupported."""
    if not enabled:
        return module
    try:
        return torch.compile(module, dynamic=True)
    except Exception as e:  # pragma: no cover - depends on the platform
        warnings.warn(f"torch.compile is not available here ({e}); running eagerly.")
        return module
