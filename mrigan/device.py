"""Device selection and the precision/layout choices that go with it.

* ``resolve_device``: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` | ``mps``; a malformed name or
  a device this machine lacks is a :class:`DeviceError` (one line, exit 2 on the command line).
* ``resolve_precision``: what ``precision: auto`` means here, per *job*. On CUDA bf16 (fp16
  where bf16 is unsupported) for every job. On a CPU:

  - ``job="inference"`` (maps, scores, verdicts, evaluation): always **fp32**, so the same video
    gives the same maps and numbers on every CPU (issue 20: bf16 autocast moved a generator's
    maps by 5e-3 and a LIME weight in the 6th digit on a CPU with native bf16, and nothing on
    one without). bf16 inference on a CPU stays available when asked for by name.
  - ``job="training"``: bf16 where the CPU computes bf16 natively (:func:`cpu_has_native_bf16`:
    AVX512-BF16 or AMX on x86, the BF16 extension on ARM), else fp32. On an AMD EPYC with
    AVX512-BF16 a 128 px GAN step ran 1.76x fp32 (issue 20), on Intel CPUs with AMX 1.4-1.85x;
    on an AMD EPYC without those bf16 autocast ran 20x slower than fp32 (issue 14). A run
    records the precision it used (:mod:`mrigan.loop`) and a resumed run keeps it.

  An explicit ``bf16`` on a CPU without native bf16 is honoured with a warning (once per
  process).
* ``adam_kwargs``: ``Adam(..., **adam_kwargs(device, impl))`` for ``impl`` = ``auto`` (fused
  wherever this torch has it, else foreach), ``fused``, ``foreach`` or ``for_loop``. Fused
  measured fastest on both: +2% over foreach on an H200 (issue 14), and on a 2-core AMD EPYC the
  Adam update of the 64 px MRI-GAN (32 M parameters, one thread) took 141 ms fused vs 633 ms
  foreach vs 832 ms for_loop (torch 2.14, medians of 5).
* ``set_cudnn_benchmark``: ``torch.backends.cudnn.benchmark`` (``auto``: on for CUDA; a
  process-wide setting that picks the fastest convolution algorithms for fixed input shapes).
* ``device_description``: the CPU model or GPU name and its bf16 capability, for benchmarks.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import platform
import warnings

import torch

from mrigan.config import ConfigError
from mrigan.errors import MriganError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
#: What a precision is resolved for (:func:`resolve_precision`): ``auto`` differs on a CPU.
JOBS = ("inference", "training")
ADAM_IMPLS = ("auto", "fused", "foreach", "for_loop")

#: /proc/cpuinfo flags that mean native bf16 arithmetic (x86: AVX512-BF16, AMX; ARM: BF16).
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
#: Environment variable overriding the bf16 detection (:func:`cpu_has_native_bf16`).
NATIVE_BF16_ENV = "MRIGAN_NATIVE_BF16"


class DeviceError(MriganError, RuntimeError):
    """A device name that is malformed or names hardware this machine does not have."""


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` picks CUDA when available (the local rank's GPU under torchrun), else CPU."""
    if isinstance(spec, torch.device):
        return spec
    if not isinstance(spec, str) and spec is not None:
        raise DeviceError(f"device must be a name such as 'cpu' or 'cuda', got {spec!r}")
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            local_rank = int(os.environ.get("LOCAL_RANK", "0"))
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError) as exc:
        raise DeviceError(f"device {spec!r} is not a device name (use auto, cpu, cuda, cuda:N "
                          "or mps)") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {spec!r} requested but CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"device {spec!r} requested but this machine has "
                              f"{torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"device {spec!r} requested but MPS is not available on this machine")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"device {spec!r} is not supported (use auto, cpu, cuda, cuda:N or mps)")
    return device


def _cpuinfo_flags(path: str = "/proc/cpuinfo") -> set[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
    except OSError:
        return set()
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return flags


@functools.lru_cache(maxsize=1)
def _detected_native_bf16() -> bool:
    return bool(_cpuinfo_flags() & NATIVE_BF16_FLAGS)


def _forced_native_bf16() -> bool | None:
    value = os.environ.get(NATIVE_BF16_ENV, "").strip().lower()
    if not value:
        return None
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"environment variable {NATIVE_BF16_ENV}={value!r}: use 1 or 0 (or unset "
                      "it to detect the CPU)")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (see :data:`NATIVE_BF16_FLAGS`); on macOS, Apple
    silicon from M2 on has it, which we do not detect: False there (fp32 stays the default).

    ``MRIGAN_NATIVE_BF16=1`` / ``=0`` overrides the detection (the test suite pins it, so it
    runs alike on CPUs of either kind and can be run as the other kind; benchmarks use it to
    compare)."""
    forced = _forced_native_bf16()
    return _detected_native_bf16() if forced is None else forced


def cpu_description() -> str:
    """CPU model and bf16 capability, for benchmark output (``AMD EPYC (bf16: emulated)``)."""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    forced = _forced_native_bf16()
    note = f", forced by {NATIVE_BF16_ENV}" if forced is not None else ""
    return f"{model} (bf16: {'native' if cpu_has_native_bf16() else 'not native'}{note})"


@functools.cache
def _warn_slow_bf16_once() -> None:
    warnings.warn("precision bf16 on a CPU without native bf16 (no AVX512-BF16/AMX): autocast "
                  "emulates it and can be many times slower than fp32; use precision auto or fp32",
                  RuntimeWarning, stacklevel=3)


def resolve_precision(device: torch.device, precision: str = "auto",
                      job: str = "inference") -> str:
    """``fp32`` | ``bf16`` | ``fp16``: what ``precision`` means on ``device`` for ``job``
    (``inference`` or ``training``; see the module doc: ``auto`` on a CPU is fp32 for
    inference whatever the CPU, bf16 for training where the CPU has native bf16)."""
    precision = str(precision).lower()
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; use fp32, bf16, fp16 or auto")
    if job not in JOBS:
        raise ValueError(f"unknown job {job!r}; use {' or '.join(JOBS)}")
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        if device.type == "cpu" and job == "training" and cpu_has_native_bf16():
            return "bf16"
        return "fp32"
    if precision == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        _warn_slow_bf16_once()
    return precision


def autocast(device: torch.device, precision: str = "auto", job: str = "inference"):
    """Autocast context. ``precision``: ``fp32``, ``bf16``, ``fp16`` or ``auto`` (resolved for
    ``job``, see :func:`resolve_precision`); trainers pass their resolved precision."""
    precision = resolve_precision(device, precision, job)
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    if dtype is torch.float16 and device.type == "cpu":
        raise ValueError("fp16 autocast is for CUDA; use bf16 on CPU")
    return torch.autocast(device_type=device.type, dtype=dtype)


def use_channels_last(device: torch.device) -> bool:
    """channels_last helps convolutions on CUDA tensor cores; on CPU we measured it per model."""
    return device.type == "cuda"


def fused_adam_supported(device: torch.device) -> bool:
    """Whether ``torch.optim.Adam(fused=True)`` runs on ``device``'s type in this torch."""
    if "fused" not in inspect.signature(torch.optim.Adam).parameters:
        return False
    try:
        from torch.optim.optimizer import _get_fused_kernels_supported_devices
    except ImportError:  # older torch: fused Adam was CUDA-only
        return device.type == "cuda"
    return device.type in _get_fused_kernels_supported_devices()


def adam_kwargs(device: torch.device, impl: str = "auto") -> dict[str, bool]:
    """Keyword arguments of ``torch.optim.Adam`` for an implementation choice (module doc).

    All implementations compute the same update (up to float rounding). A ``fused`` that this
    device/torch lacks is a :class:`DeviceError`."""
    impl = str(impl).lower()
    if impl not in ADAM_IMPLS:
        raise ConfigError(f"train.adam_impl: unknown Adam implementation {impl!r}; use "
                          f"{', '.join(ADAM_IMPLS)}")
    if impl == "auto":
        impl = "fused" if fused_adam_supported(device) else "foreach"
    if impl == "fused":
        if not fused_adam_supported(device):
            raise DeviceError(f"fused Adam is not available on {device.type} with torch "
                              f"{torch.__version__}; use adam_impl auto, foreach or for_loop")
        return {"fused": True}
    return {"foreach": impl == "foreach"}


def resolve_switch(setting: str | bool, auto: bool, key: str) -> bool:
    """An ``auto | true | false`` setting (also yes/no, on/off, 1/0) as a bool; ``auto`` is
    ``auto``. Anything else is a :class:`~mrigan.config.ConfigError` naming ``key``."""
    if isinstance(setting, bool):
        return setting
    value = str(setting).strip().lower()
    if value == "auto":
        return auto
    if value in ("true", "yes", "1", "on"):
        return True
    if value in ("false", "no", "0", "off"):
        return False
    raise ConfigError(f"{key} must be auto, true or false, got {setting!r}")


def set_cudnn_benchmark(device: torch.device, setting: str | bool = "auto") -> bool:
    """Set ``torch.backends.cudnn.benchmark`` for a run on ``device`` (``auto``: on for CUDA);
    returns the value set. On other devices the flag has no effect and is left as it is."""
    on = resolve_switch(setting, device.type == "cuda", "train.cudnn_benchmark")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = on
    return on


def compute_record(device: torch.device | str, **precisions: str) -> dict[str, object]:
    """What analyses and evaluation reports record of where their numbers were computed:
    ``{"device": "cpu", "hardware": <device_description>, "precision": {"generator": "fp32",
    ...}}`` with the resolved precision of each named model."""
    device = torch.device(device)
    return {"device": str(device), "hardware": device_description(device),
            "precision": dict(precisions)}


def device_description(device: torch.device | str = "cpu") -> str:
    """``NVIDIA H200 (bf16: supported)`` or the :func:`cpu_description` of this machine."""
    device = torch.device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return f"{name} (bf16: {'supported' if torch.cuda.is_bf16_supported() else 'no'})"
    return cpu_description()
