"""Per-pixel perceptual maps: SSIM, the MRI (1 - SSIM, clipped), and a registry of others.

``ssim_map`` reproduces scikit-image's ``structural_similarity(..., full=True,
gaussian_weights=True, sigma=1.5, use_sample_covariance=False)`` image, borders included
(scikit-image filters with scipy's ``reflect`` mode, i.e. numpy's ``symmetric`` padding).
It is batched (N, C, H, W), runs on CPU or CUDA, and is differentiable. On CPU, for float32
without autograd and windows up to 11, a fused numba kernel does the work
(``mrigan._ssim_cpu``, float64 arithmetic: ~15-20x scikit-image's pair-at-a-time
throughput per CPU-second, see ``bench/perceptual.py``); it reads channels-last tensors in
place and, for ``mri_map``, writes the clipped MRI directly. Otherwise (CUDA, float64,
autograd) two separable depthwise convolutions over the five stacked local moments do it,
also in float64: float32 sums of squares miss scikit-image by ~2e-4 on real frames.

Images inside the library are float tensors; ``data_range`` is always explicit (255 for
uint8-valued data, 1 for [0, 1] data), because SSIM's constants depend on it.

Bad inputs are refused, never turned into a plausible map (:class:`mrigan.errors.InputValueError`):

* **Non-finite pixels** (NaN, +-inf): one NaN would spread over its whole 11x11 window and the
  "[0, 1]" map would hold NaN. Checked once per call, vectorised (``torch.isfinite``), before
  the kernel runs. (``ssim_loss`` does not check: the trainer's non-finite-loss stop handles it.)
* **Mixed dtypes**: the two images of a pair must both be integer or both be floating point.
  A uint8 real (0..255) with a float fake (0..1) measured every pixel as dissimilar (a map of
  ~1.0 everywhere). Integer pairs are converted to float32; two float dtypes are computed
  together in the first one's dtype.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from mrigan import _ssim_cpu
from mrigan.errors import InputValueError
from mrigan.registry import Registry

PerceptualMap = Callable[..., torch.Tensor]

#: Per-pixel dissimilarity maps in [0, 1] (0 = identical), chosen by name.
DISSIMILARITIES = Registry("perceptual metric")


@functools.lru_cache(maxsize=16)
def _gaussian_taps_np(window: int, sigma: float) -> np.ndarray:
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd number, got {window}")
    r = window // 2
    xs = np.arange(-r, r + 1, dtype=np.float64)
    taps = np.exp(-0.5 * (xs / sigma) ** 2)
    return taps / taps.sum()


def gaussian_taps(window: int, sigma: float, *, dtype=torch.float32, device=None) -> torch.Tensor:
    """Normalised 1-D Gaussian taps as scipy's ``gaussian_filter`` (radius ``window // 2``)."""
    return torch.as_tensor(_gaussian_taps_np(window, float(sigma)), dtype=dtype, device=device)


def symmetric_pad(x: torch.Tensor, r: int) -> torch.Tensor:
    """Pad the last two dims by ``r`` mirroring the edge pixel too (numpy ``symmetric``)."""
    h, w = x.shape[-2:]
    if r > min(h, w):
        raise ValueError(f"image of {h}x{w} is too small for a filter radius of {r}")
    if r == 0:
        return x
    x = torch.cat([x[..., :r].flip(-1), x, x[..., -r:].flip(-1)], dim=-1)
    return torch.cat([x[..., :r, :].flip(-2), x, x[..., -r:, :].flip(-2)], dim=-2)


def gaussian_filter(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Separable filter of every (N, C) plane with symmetric borders, output same size."""
    n, c, h, w = x.shape
    r = taps.numel() // 2
    xp = symmetric_pad(x, r)
    kw = taps.view(1, 1, 1, -1).expand(c, 1, 1, -1)
    kh = taps.view(1, 1, -1, 1).expand(c, 1, -1, 1)
    return F.conv2d(F.conv2d(xp, kw, groups=c), kh, groups=c)


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError("ssim_map takes torch tensors; use ssim_map_np for numpy images")
    if x.shape != y.shape:
        raise ValueError(f"images differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
    if x.dim() != 4:
        raise ValueError(f"expected (N, C, H, W) tensors, got shape {tuple(x.shape)}")
    if x.is_floating_point() != y.is_floating_point():
        raise InputValueError(
            f"cannot compare a {x.dtype} image with a {y.dtype} image: integer (0..255) and "
            "floating (0..1) pixels are on different scales; convert one so both match")


def check_finite(*tensors: torch.Tensor, names: tuple[str, ...] = ("real", "fake")) -> None:
    """Raise :class:`InputValueError` when any floating tensor holds NaN or infinity."""
    for name, t in zip(names, tensors, strict=False):
        bad = _count_not_finite(t) if t.is_floating_point() else 0
        if bad:
            raise InputValueError(f"{name} image has {bad} non-finite value(s) (NaN or inf); "
                                  "a perceptual map of it would be meaningless")


def _count_not_finite(t: torch.Tensor) -> int:
    """NaN/inf values in ``t``: a numba pass over dense CPU float32/float64 tensors in any
    memory layout (channels-last included), else torch."""
    t = t.detach()
    if _ssim_cpu.AVAILABLE and t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64):
        in_memory_order = t.permute(sorted(range(t.dim()), key=lambda d: -t.stride(d)))
        if in_memory_order.is_contiguous():
            return _ssim_cpu.count_not_finite(in_memory_order.numpy().reshape(-1),
                                              torch.get_num_threads())
    return int((~torch.isfinite(t)).sum())


def ssim_map(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    data_range: float,
    window: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Per-pixel, per-channel SSIM of two (N, C, H, W) batches; same shape as the inputs.

    Integer tensors are converted to float32 (uint8 pairs are read as they are by the CPU
    kernel). Matches scikit-image's full SSIM image with
    ``gaussian_weights=True, use_sample_covariance=False`` within 1e-4 in float32 and
    ~1e-12 in float64.
    """
    return _ssim_or_mri(x, y, data_range=data_range, window=window, sigma=sigma, k1=k1, k2=k2,
                        mri=False)


def _ssim_or_mri(x, y, *, data_range, window=11, sigma=1.5, k1=0.01, k2=0.03, mri,
                 precise=True, finite=True) -> torch.Tensor:
    """Checks, integer-to-float conversion, then the fused CPU kernel or the torch path.

    ``precise=False`` lets the torch path work in the input's precision (see ssim_loss);
    ``finite=False`` skips the non-finite check (the training loss).
    """
    _check_pair(x, y)
    if finite:
        check_finite(x, y)
    if data_range is None or not data_range > 0:
        raise ValueError(f"data_range must be a positive number, got {data_range!r}")
    if not (x.dtype == y.dtype == torch.uint8):  # uint8 pairs: the CPU kernel reads them
        if not x.is_floating_point():
            x = x.float()
        if not y.is_floating_point():
            y = y.to(x.dtype)
    r = window // 2
    if min(x.shape[-2:]) <= r:
        raise ValueError(f"images of {tuple(x.shape[-2:])} are too small for window {window}")
    kw = dict(data_range=data_range, window=window, sigma=sigma, k1=k1, k2=k2)
    fused = _ssim_fused_cpu(x, y, mri=mri, **kw)
    if fused is not None:
        return fused
    if x.dtype == torch.uint8:
        x, y = x.float(), y.float()
    ssim = _ssim_map_torch(x, y, precise=precise, **kw)
    return (1.0 - ssim).clamp_(0.0, 1.0) if mri else ssim


def _ssim_fused_cpu(x, y, *, data_range, window, sigma, k1, k2, mri=False) -> torch.Tensor | None:
    """The numba kernel's SSIM (or MRI) map, or None where it does not apply.

    It applies on CPU to float32 (or uint8) pairs without autograd (float64 keeps the exact
    torch path), for windows up to 11 (the paper's). Channels-last inputs, as made by ``torch.from_numpy(hwc).permute(0, 3, 1, 2)``,
    are read in place, and the result then has the same memory format.
    """
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or y.requires_grad)
    if (
        not _ssim_cpu.AVAILABLE
        or needs_grad
        or x.device.type != "cpu"
        or y.device.type != "cpu"
        or x.dtype not in (torch.float32, torch.uint8)
        or y.dtype != x.dtype
        or not _ssim_cpu.supports(window, *x.shape[-2:])
    ):
        return None
    n, c, h, w = x.shape
    kernel = functools.partial(
        _ssim_cpu.ssim_rows, taps=_gaussian_taps_np(window, float(sigma)),
        data_range=float(data_range), k1=float(k1), k2=float(k2), mri=mri,
        threads=torch.get_num_threads(),  # 1 inside DataLoader workers, as torch sets it
    )
    x, y = x.detach(), y.detach()
    channels_last = torch.channels_last
    if not x.is_contiguous() and x.is_contiguous(memory_format=channels_last):
        rows_x = x.permute(0, 2, 3, 1).numpy().reshape(n, h, w * c)
        rows_y = y.contiguous(memory_format=channels_last).permute(0, 2, 3, 1).numpy()
        out = kernel(rows_x, rows_y.reshape(n, h, w * c), step=c)
        return torch.from_numpy(out.reshape(n, h, w, c)).permute(0, 3, 1, 2)
    planes_x = x.contiguous().numpy().reshape(n * c, h, w)
    planes_y = y.contiguous().numpy().reshape(n * c, h, w)
    return torch.from_numpy(kernel(planes_x, planes_y, step=1).reshape(n, c, h, w))


def _ssim_map_torch(x, y, *, data_range, window, sigma, k1, k2, precise=True) -> torch.Tensor:
    """Differentiable SSIM map by depthwise convolutions, any device.

    With ``precise`` the moments are computed in float64 whatever the input dtype: in
    float32 the variance, a small difference of two sums of squares, misses scikit-image
    by ~2e-4 in flat, dark or saturated regions of real frames. Otherwise in float32 or
    better. Always outside autocast, and the result has the input's dtype. Devices
    without float64 (MPS) stay in float32.
    """
    out_dtype = x.dtype
    device = x.device.type
    if precise and device != "mps":
        work = torch.float64
    else:
        work = torch.promote_types(x.dtype, torch.float32)
    no_autocast = (torch.autocast(device, enabled=False) if device in ("cpu", "cuda")
                   else contextlib.nullcontext())
    with no_autocast:
        x, y = x.to(work), y.to(work)
        c = x.shape[1]
        taps = gaussian_taps(window, sigma, dtype=work, device=x.device)
        mid = 0.5 * data_range  # centring keeps cancellation in the covariance small
        xc, yc = x - mid, y - mid
        # vx + vy - 2 vxy is the variance of x - y: four moments instead of five
        moments = gaussian_filter(torch.cat([xc, yc, xc * yc, (xc - yc) ** 2], dim=1), taps)
        mx, my, mxy, mdd = moments.split(c, dim=1)
        dm = mx - my
        vxy, vd = mxy - mx * my, mdd - dm * dm
        mx, my = mx + mid, my + mid
        c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
        a1, a2 = 2 * mx * my + c1, 2 * vxy + c2  # identical inputs: dm = vd = 0, num == den
        ssim = (a1 * a2) / ((dm * dm + a1) * (vd + a2))
    return ssim.to(out_dtype)


def mri_map(real: torch.Tensor, fake: torch.Tensor, *, data_range: float, **kwargs) -> torch.Tensor:
    """The MRI of MRI-GAN: ``clip(1 - SSIM(real, fake), 0, 1)`` per pixel and channel.

    1 - SSIM exceeds 1 where SSIM < 0 (anti-correlated patches); it is clipped, never wrapped.
    Identical inputs give exactly 0.
    """
    return _ssim_or_mri(real, fake, data_range=data_range, mri=True, **kwargs)


def ssim_loss(
    x: torch.Tensor, y: torch.Tensor, *, data_range: float = 1.0, eps: float = 1e-8, **kwargs
) -> torch.Tensor:
    """``sqrt(1 - mean SSIM)``, 0 for identical inputs, with a finite gradient there.

    Computed as ``sqrt(1 - SSIM + eps) - sqrt(eps)``: the plain square root has an infinite
    derivative at 0, which made the original training code's gradient non-finite. A
    training loss needs no 1e-4 parity per pixel, so with autograd it is computed in the
    input's precision (float64 depthwise convolutions cost 2-4x on CPU).
    """
    ssim = _ssim_or_mri(x, y, data_range=data_range, mri=False, precise=False, finite=False,
                        **kwargs)
    one_minus = (1.0 - ssim.mean()).clamp_min(0.0)
    return torch.sqrt(one_minus + eps) - math.sqrt(eps)


def mean_ssim(x: torch.Tensor, y: torch.Tensor, *, data_range: float, **kwargs) -> torch.Tensor:
    """Mean SSIM per image, shape (N,)."""
    return ssim_map(x, y, data_range=data_range, **kwargs).flatten(1).mean(1)


@DISSIMILARITIES.register("ssim")
def ssim_dissimilarity(real: torch.Tensor, fake: torch.Tensor, *, data_range: float) -> torch.Tensor:
    """The paper's MRI: clip(1 - SSIM, 0, 1)."""
    return mri_map(real, fake, data_range=data_range)


_PREWITT = torch.tensor([[1.0, 0.0, -1.0], [1.0, 0.0, -1.0], [1.0, 0.0, -1.0]]) / 3.0


def gradient_magnitude(x: torch.Tensor) -> torch.Tensor:
    """Prewitt gradient magnitude per channel, symmetric borders."""
    c = x.shape[1]
    kx = _PREWITT.to(dtype=x.dtype, device=x.device).view(1, 1, 3, 3).expand(c, 1, 3, 3)
    ky = kx.transpose(-1, -2)
    xp = symmetric_pad(x, 1)
    gx = F.conv2d(xp, kx, groups=c)
    gy = F.conv2d(xp, ky, groups=c)
    return torch.sqrt(gx * gx + gy * gy + 1e-12)


@DISSIMILARITIES.register("gms")
def gms_dissimilarity(
    real: torch.Tensor, fake: torch.Tensor, *, data_range: float, c: float = 0.0026
) -> torch.Tensor:
    """1 - gradient magnitude similarity (Xue et al., GMSD), per pixel and channel, in [0, 1].

    ``c`` is relative to ``data_range**2`` (0.0026 * 255**2 ~= 170, the GMSD paper's value).
    """
    _check_pair(real, fake)
    check_finite(real, fake)
    if not real.is_floating_point():
        real = real.float()
    fake = fake.to(real.dtype)
    gr, gf = gradient_magnitude(real), gradient_magnitude(fake)
    cc = c * data_range**2
    gms = (2 * gr * gf + cc) / (gr * gr + gf * gf + cc)
    return (1.0 - gms).clamp_(0.0, 1.0)


def get(name: str) -> PerceptualMap:
    """A registered per-pixel dissimilarity by name: ``perceptual.get("ssim")``."""
    return DISSIMILARITIES.get(name)


#: the metric of MRIs whose files do not say (every MRI made before the metric was a choice)
DEFAULT_METRIC = "ssim"


def metric_map(real: torch.Tensor, fake: torch.Tensor, *, metric: str = DEFAULT_METRIC,
               data_range: float) -> torch.Tensor:
    """The MRI of (N, C, H, W) pairs under the registered ``metric`` (``ssim``: :func:`mri_map`,
    the paper's). An unknown name is an :class:`~mrigan.registry.UnknownNameError`."""
    return get(metric)(real, fake, data_range=data_range)


# numpy / uint8 convenience wrappers ------------------------------------------------------


def _to_nchw(img: np.ndarray, keep_uint8: bool = False) -> torch.Tensor:
    arr = np.asarray(img)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4:
        raise ValueError(f"expected HxW, HxWxC or NxHxWxC images, got shape {arr.shape}")
    # a channels-last view of the HWC pixels: no transposed copy, and the fused kernel reads
    # (and writes) that layout directly
    keep = keep_uint8 and arr.dtype == np.uint8  # the CPU kernel reads uint8 pairs directly
    hwc = np.ascontiguousarray(arr, dtype=np.uint8 if keep else np.float32)
    return torch.from_numpy(hwc).permute(0, 3, 1, 2)


def _from_nchw(t: torch.Tensor, like: np.ndarray) -> np.ndarray:
    out = t.numpy().transpose(0, 2, 3, 1)
    like = np.asarray(like)
    if like.ndim == 3:
        return out[0]
    if like.ndim == 2:
        return out[0, ..., 0]
    return out


def _default_range(img: np.ndarray, data_range: float | None) -> float:
    if data_range is not None:
        return float(data_range)
    if np.asarray(img).dtype == np.uint8:
        return 255.0
    raise ValueError("data_range is required for non-uint8 images (255 for 0..255, 1 for 0..1)")


def _both_uint8(a: np.ndarray, b: np.ndarray) -> bool:
    return np.asarray(a).dtype == np.uint8 and np.asarray(b).dtype == np.uint8


def _check_np_pair(a: np.ndarray, b: np.ndarray) -> None:
    """The numpy wrappers convert to float32, so the dtype rule is checked on the arrays."""
    ka, kb = np.asarray(a).dtype.kind, np.asarray(b).dtype.kind
    if (ka == "f") != (kb == "f"):
        raise InputValueError(
            f"cannot compare a {np.asarray(a).dtype} image with a {np.asarray(b).dtype} image: "
            "integer (0..255) and floating (0..1) pixels are on different scales; convert one")


def ssim_map_np(a: np.ndarray, b: np.ndarray, *, data_range: float | None = None, **kw) -> np.ndarray:
    """SSIM map of HxWxC (or NxHxWxC, or HxW) images as float32, same layout as the input."""
    _check_np_pair(a, b)
    dr = _default_range(a, data_range)
    with torch.no_grad():
        ints = _both_uint8(a, b)
        return _from_nchw(ssim_map(_to_nchw(a, ints), _to_nchw(b, ints), data_range=dr, **kw), a)


def mri_map_np(real: np.ndarray, fake: np.ndarray, *, data_range: float | None = None, **kw) -> np.ndarray:
    """MRI map in [0, 1] of HxWxC uint8 (or float, with ``data_range``) images, float32."""
    _check_np_pair(real, fake)
    dr = _default_range(real, data_range)
    with torch.no_grad():
        ints = _both_uint8(real, fake)
        return _from_nchw(mri_map(_to_nchw(real, ints), _to_nchw(fake, ints), data_range=dr, **kw),
                          real)


def metric_map_np(real: np.ndarray, fake: np.ndarray, *, metric: str = DEFAULT_METRIC,
                  data_range: float | None = None) -> np.ndarray:
    """:func:`metric_map` of HxWxC uint8 (or float, with ``data_range``) images, float32 in the
    input's layout; ``ssim`` is exactly :func:`mri_map_np`."""
    fn = get(metric)
    if metric == DEFAULT_METRIC:
        return mri_map_np(real, fake, data_range=data_range)
    _check_np_pair(real, fake)
    dr = _default_range(real, data_range)
    with torch.no_grad():
        return _from_nchw(fn(_to_nchw(real), _to_nchw(fake), data_range=dr), real)


def mri_to_uint8(mri: np.ndarray | torch.Tensor) -> np.ndarray:
    """[0, 1] MRI -> uint8 image (rounded, clipped: never wraps around).

    NaN or infinite values are an :class:`InputValueError` (NaN would become 0, "untouched").
    """
    arr = mri.detach().cpu().numpy() if isinstance(mri, torch.Tensor) else np.asarray(mri)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise InputValueError(f"MRI has {int((~np.isfinite(arr)).sum())} non-finite value(s) "
                              "(NaN or inf); refusing to write them as 0")
    return np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)
