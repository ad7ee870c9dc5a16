"""Device selection and the precision/layout choices that go with it."""

from __future__ import annotations

import contextlib
import os

import torch


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` picks CUDA when available (the local rank's GPU under torchrun), else CPU."""
    if isinstance(spec, torch.device):
        return spec
    spec = (spec or "auto").lower()
    if spec == "auto":
        if torch.cuda.is_available():
            local_rank = int(os.environ.get("LOCAL_RANK", "0"))
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        return torch.device("cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {spec!r} requested but CUDA is not available on this machine")
    return device


def autocast(device: torch.device, precision: str = "auto"):
    """Autocast context. ``precision``: ``fp32``, ``bf16``, ``fp16`` or ``auto``
    (bf16 on CUDA when supported, else fp16 on CUDA; fp32 on CPU)."""
    precision = precision.lower()
    if precision == "auto":
        if device.type == "cuda":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            precision = "fp32"
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    if dtype is None:
        raise ValueError(f"unknown precision {precision!r}; use fp32, bf16, fp16 or auto")
    if dtype is torch.float16 and device.type == "cpu":
        raise ValueError("fp16 autocast is for CUDA; use bf16 on CPU")
    return torch.autocast(device_type=device.type, dtype=dtype)


def use_channels_last(device: torch.device) -> bool:
    """channels_last helps convolutions on CUDA tensor cores; on CPU we measured it per model."""
    return device.type == "cuda"
