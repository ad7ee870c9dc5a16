"""Fused CPU kernel for the per-pixel SSIM map (numba), used by ``mrigan.perceptual``.

One pass per (image, channel) plane: the five local moments are formed and filtered along rows
into a small buffer, then filtered along columns and combined into SSIM, so nothing but the
inputs and the output goes through main memory. Borders mirror like numpy's ``symmetric``
(scipy's ``reflect``), as scikit-image does. Values are centred by ``data_range / 2`` before
squaring to keep float32 cancellation small (variances are shift-invariant).
"""

from __future__ import annotations

import functools

import numpy as np

try:
    import numba as nb
except ImportError:  # pragma: no cover - numba is a declared dependency
    nb = None

AVAILABLE = nb is not None


def _ssim_planes(x, y, taps, data_range, k1, k2, out):  # pragma: no cover - compiled
    n_img, n_ch, h, w = x.shape
    r = taps.shape[0] // 2
    c1 = np.float32((k1 * data_range) ** 2)
    c2 = np.float32((k2 * data_range) ** 2)
    mid = np.float32(0.5 * data_range)
    kf = taps.astype(np.float32)
    for p in nb.prange(n_img * n_ch):
        n = p // n_ch
        ch = p % n_ch
        xs = x[n, ch]
        ys = y[n, ch]
        rows = np.zeros((h, 5, w), np.float32)
        line = np.empty((5, w + 2 * r), np.float32)
        for i in range(h):
            for j in range(w + 2 * r):
                jj = j - r
                if jj < 0:
                    jj = -jj - 1
                elif jj >= w:
                    jj = 2 * w - jj - 1
                a = xs[i, jj] - mid
                b = ys[i, jj] - mid
                line[0, j] = a
                line[1, j] = b
                line[2, j] = a * a
                line[3, j] = b * b
                line[4, j] = a * b
            for m in range(5):
                dst = rows[i, m]
                src = line[m]
                for t in range(r):
                    wt = kf[t]
                    for j in range(w):
                        dst[j] += wt * (src[j + t] + src[j + 2 * r - t])
                wt = kf[r]
                for j in range(w):
                    dst[j] += wt * src[j + r]
        acc = np.empty((5, w), np.float32)
        o = out[n, ch]
        for i in range(h):
            acc[:] = 0.0
            for t in range(2 * r + 1):
                ii = i - r + t
                if ii < 0:
                    ii = -ii - 1
                elif ii >= h:
                    ii = 2 * h - ii - 1
                wt = kf[t]
                src2 = rows[ii]
                for m in range(5):
                    for j in range(w):
                        acc[m, j] += wt * src2[m, j]
            for j in range(w):
                mx = acc[0, j]
                my = acc[1, j]
                vx = acc[2, j] - mx * mx
                vy = acc[3, j] - my * my
                vxy = acc[4, j] - mx * my
                mx += mid
                my += mid
                # written so that identical inputs give num == den bit for bit (SSIM exactly 1)
                a1 = 2 * mx * my + c1
                a2 = 2 * vxy + c2
                dm = mx - my
                o[i, j] = (a1 * a2) / ((dm * dm + a1) * ((vx + vy - 2 * vxy) + a2))
    return out


@functools.lru_cache(maxsize=1)
def _kernel():
    return nb.njit(parallel=True, fastmath=False, cache=True)(_ssim_planes)


def ssim_planes(x: np.ndarray, y: np.ndarray, taps: np.ndarray, data_range: float,
                k1: float, k2: float) -> np.ndarray:
    """SSIM map of float32 (N, C, H, W) arrays; requires H, W > radius of ``taps``."""
    if not AVAILABLE:
        raise RuntimeError("numba is not installed")
    out = np.empty_like(x)
    return _kernel()(x, y, taps, float(data_range), float(k1), float(k2), out)
