"""Fused CPU kernel for the per-pixel SSIM (or MRI) map, used by ``mrigan.perceptual``.

SSIM needs the variances only as ``vx + vy - 2 vxy``, which is the variance of ``x - y``, so
four local moments suffice: x, y, xy and (x - y)². Each task computes a band of output rows
of one image, one row at a time:

1. down the columns: the four moments of the 11 input rows around the output row are formed
   and summed with the Gaussian taps in registers (the products are recomputed rather than
   stored: loads are the bottleneck, not arithmetic);
2. along the row: the four column sums, kept in one small line buffer (~25 KB), are summed
   with the same taps and combined into SSIM in the same loop.

Nothing but the inputs and the output goes through main memory, and no row depends on
another task's work, so a batch splits into any number of tasks at no cost.

Borders mirror like numpy's ``symmetric`` (scipy's ``reflect``), as scikit-image does.
Inputs are float32 or uint8 (read as they are: no converted copy), the output float32, values
centred by ``data_range / 2``. Each row is computed in float32 (twice the SIMD lanes of
float64: 1.5-1.7x the speed, measured) together with an estimate of its rounding error: in
float32, ``vxy = mean(ab) - mean(a) mean(b)`` is a small difference of numbers near 1.6e4 in
flat dark or saturated regions, and ``mean(a) - mean(b)`` loses digits there too. The estimate
(see ``_row``) is the first-order change of SSIM under rounding errors of the size of the
magnitudes each difference cancels; a row where it exceeds :data:`ERROR_BOUND` (2.5e-5) for
any value is redone in float64. Measured on real FaceForensics++ frames: float32 alone misses
scikit-image by up to 1.7e-5 (3e-5 on the heavily compressed 004 frame), the estimate is
within ~1.2x of the actual error, 0-3% of the rows of face crops and frames are redone (about
a fifth on 004), and the result stays within 3e-5 of scikit-image against the 1e-4 target;
``precision="float64"`` (every row in float64, the kernel before float32) stays within the
output's float32 rounding (~3e-8).

Why the code looks the way it does (each point was measured):

* The kernel is written for radius 5 (the paper's 11x11 window) with the taps spelled out:
  LLVM vectorises a loop over the pixels of a row only if the loop body has no inner loop,
  and it would not reliably unroll a tap loop itself (a 4x difference). Smaller windows run
  the same code with their taps zero-padded (adding ``0 * value`` changes no sum).
* Buffer indices are cast to ``uintp``: numba wraps negative signed indices (``a[-1]``),
  and that per-element check turns every vector load into a gather.
* ``fastmath={"contract"}`` allows fused multiply-adds but never reassociation, so for
  identical inputs the numerator and denominator stay equal bit for bit (SSIM exactly 1).
  numpy's error model lets a division by zero give inf/NaN (as in torch) instead of a
  per-pixel check that would block vectorisation.
* Layouts: a task sees an image as rows of ``L`` values where horizontally adjacent pixels
  of one channel are ``step`` apart: ``step=1`` for an (N*C, H, W) stack of planes,
  ``step=C`` for (N, H, W*C) channels-last images, which thus need no transposed copy.
"""

from __future__ import annotations

import functools
import itertools
import math
import threading
import warnings

import numpy as np

try:
    import numba as nb
except ImportError:  # pragma: no cover - numba is a declared dependency
    nb = None

AVAILABLE = nb is not None

#: The radius the kernel is written for; windows up to ``2 * RADIUS + 1`` are supported.
RADIUS = 5

_JIT = dict(fastmath={"contract"}, error_model="numpy")

#: The largest error in SSIM the float32 arithmetic may add, by the bound of ``_row``: rows
#: with a value whose bound exceeds it are redone in float64 (see the module docstring).
ERROR_BOUND = 2.5e-5
_FLOAT32_UNIT = 2.0**-24  # unit roundoff of float32

#: Fewer output rows than this per task and the per-task overhead starts to show.
_MIN_BAND_ROWS = 16

#: Output values per thread below which starting threads (~0.1 ms) costs about what it saves
#: (the kernel does ~0.2 values per ns per core).
_MIN_VALUES_PER_THREAD = 1 << 16


def _above(i):  # pragma: no cover - jit
    """Row index ``i <= h - 1`` mirrored at the top edge (numpy 'symmetric')."""
    return nb.uintp(max(i, -i - 1))


def _below(i, h):  # pragma: no cover - jit
    """Row index ``i >= 0`` mirrored at the bottom edge."""
    return nb.uintp(min(i, 2 * h - i - 1))


def _centre_moments(xi, yi, i, j, tap, mid):  # pragma: no cover - jit
    a = xi[i, j] - mid
    b = yi[i, j] - mid
    d = a - b
    return (tap * a, tap * b, tap * (a * b), tap * (d * d))


def _add_row_pair(s, xi, yi, lo, hi, j, tap, mid):  # pragma: no cover - jit
    """The four sums ``s`` plus ``tap`` times the moments of rows ``lo`` and ``hi``."""
    al = xi[lo, j] - mid
    ah = xi[hi, j] - mid
    bl = yi[lo, j] - mid
    bh = yi[hi, j] - mid
    dl = al - bl
    dh = ah - bh
    return (
        s[0] + tap * (al + ah),
        s[1] + tap * (bl + bh),
        s[2] + tap * (al * bl + ah * bh),
        s[3] + tap * (dl * dl + dh * dh),
    )


def _add_col_pair(s, line, lo, hi, tap):  # pragma: no cover - jit
    """The four sums ``s`` plus ``tap`` times line columns ``lo`` and ``hi``."""
    lo = nb.uintp(lo)
    hi = nb.uintp(hi)
    return (
        s[0] + tap * (line[0, lo] + line[0, hi]),
        s[1] + tap * (line[1, lo] + line[1, hi]),
        s[2] + tap * (line[2, lo] + line[2, hi]),
        s[3] + tap * (line[3, lo] + line[3, hi]),
    )


def _row(xi, yi, i, step, taps, mid, c1, c2, one, mri, limit, line, out_row):  # pragma: no cover - jit
    """Output row ``i`` of one image into ``out_row``, in the type of ``mid`` / ``taps`` /
    ``one`` (float32 or float64). Returns how many of its values may miss the float64 result by
    more than the error bound ``limit`` allows (see :func:`ssim_rows`; ``inf``: none)."""
    h, width = xi.shape[0], xi.shape[1]
    pad = 5 * step
    cols = width // step
    two = one + one
    zero = one - one
    # 1. column sums of the four moments, mirrored rows at the top and bottom edges
    for j in range(width):
        s = _centre_moments(xi, yi, i, j, taps[5], mid)
        s = _add_row_pair(s, xi, yi, _above(i - 5), _below(i + 5, h), j, taps[0], mid)
        s = _add_row_pair(s, xi, yi, _above(i - 4), _below(i + 4, h), j, taps[1], mid)
        s = _add_row_pair(s, xi, yi, _above(i - 3), _below(i + 3, h), j, taps[2], mid)
        s = _add_row_pair(s, xi, yi, _above(i - 2), _below(i + 2, h), j, taps[3], mid)
        s = _add_row_pair(s, xi, yi, _above(i - 1), _below(i + 1, h), j, taps[4], mid)
        q = nb.uintp(pad + j)
        line[0, q] = s[0]
        line[1, q] = s[1]
        line[2, q] = s[2]
        line[3, q] = s[3]
    # mirrored columns: pixel d + 1 beyond each end repeats pixel d from that end
    for m in range(4):
        for d in range(5):
            for c in range(step):
                line[m, (4 - d) * step + c] = line[m, (5 + d) * step + c]
                line[m, (5 + cols + d) * step + c] = line[m, (4 + cols - d) * step + c]
    # 2. row sums, then SSIM
    risky = 0
    for j in range(width):
        jc = nb.uintp(j + pad)
        t = taps[5]
        s = (t * line[0, jc], t * line[1, jc], t * line[2, jc], t * line[3, jc])
        s = _add_col_pair(s, line, j, j + 10 * step, taps[0])
        s = _add_col_pair(s, line, j + step, j + 9 * step, taps[1])
        s = _add_col_pair(s, line, j + 2 * step, j + 8 * step, taps[2])
        s = _add_col_pair(s, line, j + 3 * step, j + 7 * step, taps[3])
        s = _add_col_pair(s, line, j + 4 * step, j + 6 * step, taps[4])
        dm = s[0] - s[1]
        vxy = s[2] - s[0] * s[1]
        vd = s[3] - dm * dm  # var(x - y) = vx + vy - 2 vxy, without their cancellation
        mx = s[0] + mid
        my = s[1] + mid
        # identical inputs: dm = vd = 0 exactly, so num == den bit for bit (SSIM exactly 1)
        a1 = two * mx * my + c1
        a2 = two * vxy + c2
        # error estimate, in units of roundoff: SSIM = A a2 / (vd + a2), A = a1 / (dm^2 + a1)
        # in (0, 1], moves by A (2 vd dvxy - a2 dvd) / (vd + a2)^2 when vxy and vd carry
        # rounding errors dvxy, dvd of about the magnitudes they cancel, |E ab| + |E a E b|
        # (<= E[d^2] / 2 + 2 |E ab| + |E a E b|, as |E ab| <= E[a^2 + b^2] / 2) and
        # E d^2 + dm^2, and by about 2 dm ddm / (dm^2 + a1) when dm carries an error ddm of
        # about |E a| + |E b| (the luminance term, in dark or bright regions)
        den = vd + a2
        lum = dm * dm + a1
        mxy = s[3] + two * (abs(s[2]) + abs(s[0] * s[1]))
        structure = two * abs(vd) * mxy + abs(a2) * (s[3] + dm * dm)
        luminance = two * abs(dm) * (abs(s[0]) + abs(s[1]))
        risky += structure * lum + luminance * den * den > limit * den * den * lum
        v = (a1 * a2) / (lum * den)
        if mri:  # 1 - SSIM, clipped (never wrapped); NaN stays NaN like torch's clamp
            v = one - v
            if v < zero:
                v = zero
            elif v > one:
                v = one
        out_row[j] = np.float32(v)
    return risky


def _band(x, y, img, row0, row1, step, taps32, taps64, mid, c1, c2, mri, limit,
          out):  # pragma: no cover - jit
    """Output rows ``row0:row1`` of image ``img``; ``taps`` = outermost half, then the centre.

    Each row is computed in float32 and, where its error bound says a value may miss
    (``limit``; 0 = always), again in float64. Returns the number of rows redone."""
    width = x.shape[2]
    pad = 5 * step
    xi = x[img]
    yi = y[img]
    line32 = np.empty((4, width + 2 * pad), np.float32)
    line64 = np.empty((4, width + 2 * pad), np.float64)
    f32 = np.float32
    redone = 0
    for i in range(row0, row1):
        if limit > 0 and _row(xi, yi, i, step, taps32, f32(mid), f32(c1), f32(c2), f32(1.0), mri,
                              f32(limit), line32, out[img, i]) == 0:
            continue
        _row(xi, yi, i, step, taps64, mid, c1, c2, 1.0, mri, np.inf, line64, out[img, i])
        redone += 1
    return redone


def _ssim_tasks(x, y, step, taps32, taps64, bands, first, last, data_range, k1, k2, mri, limit,
                out, redone):  # pragma: no cover - jit
    """Tasks ``first:last`` of ``len(x) * bands``: task t is band ``t % bands`` of image
    ``t // bands``; ``redone[t]``: its rows recomputed in float64."""
    h = x.shape[1]
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    mid = 0.5 * data_range
    for task in range(first, last):
        img = task // bands
        band = task % bands
        redone[task] = _band(x, y, img, band * h // bands, (band + 1) * h // bands, step, taps32,
                             taps64, mid, c1, c2, mri, limit, out)


if AVAILABLE:
    _inline = nb.njit(inline="always", **_JIT)
    _above = _inline(_above)
    _below = _inline(_below)
    _centre_moments = _inline(_centre_moments)
    _add_row_pair = _inline(_add_row_pair)
    _add_col_pair = _inline(_add_col_pair)
    _row = nb.njit(**_JIT)(_row)
    _band = nb.njit(**_JIT)(_band)


def jit_with_disk_cache(py_func, **options):
    """``numba.njit(cache=True)``, or an in-memory compile if no cache location is writable.

    numba keeps compiled code in ``__pycache__`` beside the source, else in the user's cache
    directory (``NUMBA_CACHE_DIR``); a later process then loads it in well under a second
    instead of compiling for several. A read-only install without a writable home must
    still work, only slower to start.
    """
    try:
        return nb.njit(cache=True, **options)(py_func)
    except RuntimeError as err:  # numba: "cannot cache function ...: no locator available"
        warnings.warn(f"compiling {py_func.__name__} without an on-disk cache: {err}",
                      RuntimeWarning, stacklevel=2)
        return nb.njit(cache=False, **options)(py_func)


@functools.lru_cache(maxsize=1)
def _kernel():
    """The serial, GIL-free entry point, compiled (or loaded from disk) on first use.

    Threads come from ``run_parallel`` rather than numba's ``prange``: numba's OpenMP layer
    kills (SIGTERM) any forked child that uses it after the parent did, which is exactly
    what DataLoader workers and process pools do; plain threads started per call are
    fork-safe, and a serial function also compiles several times faster than a parfor.
    """
    return jit_with_disk_cache(_ssim_tasks, nogil=True, **_JIT)


def run_parallel(fn, n_tasks: int, threads: int) -> None:
    """Call ``fn(first, last)`` over ``range(n_tasks)`` in chunks on up to ``threads`` threads.

    The calling thread works too, and all take chunks from a shared counter (four per
    thread), which keeps them evenly busy when other jobs share the cores. The helper
    threads live for one call only, so nothing survives into a forked child.
    """
    chunks = max(1, min(n_tasks, 4 * threads))
    if threads <= 1 or chunks == 1:
        fn(0, n_tasks)
        return
    bounds = [n_tasks * c // chunks for c in range(chunks + 1)]
    counter = itertools.count()  # next() on it is atomic under the GIL
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for c in iter(counter.__next__, None):
                if c >= chunks or errors:
                    return
                fn(bounds[c], bounds[c + 1])
        except BaseException as err:  # re-raised in the calling thread below
            errors.append(err)

    helpers = [threading.Thread(target=work, daemon=True) for _ in range(min(threads, chunks) - 1)]
    for helper in helpers:
        helper.start()
    work()
    for helper in helpers:
        helper.join()
    if errors:
        raise errors[0]


def _count_not_finite(a, first, last, counts, slot):  # pragma: no cover - jit
    """``counts[slot]``: how many of ``a[first:last]`` are NaN or infinite (``v - v`` is NaN
    exactly for those; summed without a branch, so the loop vectorises)."""
    acc = 0
    for i in range(first, last):
        v = a[nb.uintp(i)]
        acc += (v - v) != 0
    counts[slot] = acc


@functools.lru_cache(maxsize=1)
def _finite_kernel():
    return jit_with_disk_cache(_count_not_finite, nogil=True, error_model="numpy")


def count_not_finite(a: np.ndarray, threads: int = 1) -> int:
    """How many values of the flat float array ``a`` are NaN or infinite, on up to ``threads``
    threads: a vectorised pass instead of ``torch.isfinite(t).all()`` (which allocates a mask
    and, on float32 frames, took longer than the SSIM kernel itself)."""
    if not AVAILABLE:
        raise RuntimeError("numba is not installed")
    n = a.size
    threads = max(1, min(threads, n // (4 * _MIN_VALUES_PER_THREAD)))
    chunks = max(1, 4 * threads if threads > 1 else 1)
    counts = np.zeros(chunks, np.int64)
    kernel = _finite_kernel()
    run_parallel(lambda first, last: [kernel(a, n * c // chunks, n * (c + 1) // chunks, counts, c)
                                      for c in range(first, last)], chunks, threads)
    return int(counts.sum())


def supports(window: int, height: int, width: int) -> bool:
    """Whether the kernel handles this window and image size (else use the torch path)."""
    return window <= 2 * RADIUS + 1 and min(height, width) >= RADIUS


def padded_half_taps(taps: np.ndarray) -> tuple[float, ...]:
    """Symmetric 1-D taps as the kernel takes them: outermost first, ending with the centre,
    zero-padded on the outside to radius ``RADIUS``."""
    r = len(taps) // 2
    if len(taps) % 2 == 0 or r > RADIUS:
        raise ValueError(f"the kernel takes odd windows up to {2 * RADIUS + 1} taps, got {len(taps)}")
    return (0.0,) * (RADIUS - r) + tuple(float(v) for v in taps[: r + 1])


def band_count(images: int, rows: int, threads: int) -> int:
    """Bands per image, so that a few images still give every thread several tasks."""
    if threads <= 1 or images >= 4 * threads:
        return 1
    return max(1, min(math.ceil(4 * threads / max(images, 1)), rows // _MIN_BAND_ROWS))


def ssim_rows(
    x: np.ndarray,
    y: np.ndarray,
    *,
    step: int,
    taps: np.ndarray,
    data_range: float,
    k1: float,
    k2: float,
    mri: bool = False,
    threads: int = 1,
    precision: str = "auto",
    stats: dict | None = None,
) -> np.ndarray:
    """SSIM (or, with ``mri``, clipped 1 - SSIM) of (M, H, L) float32 or uint8 arrays, as float32.

    ``step`` is the distance in the last axis between horizontally adjacent pixels of one
    channel: 1 for stacked planes (N*C, H, W), C for channels-last rows (N, H, W*C).
    ``precision``: ``auto`` computes each row in float32 and redoes in float64 the rows where
    the error bound says a value may miss by more than :data:`ERROR_BOUND`; ``float64`` computes
    every row in float64 (the kernel before float32, kept for comparison). ``stats``, if given,
    receives ``rows`` and ``rows_float64`` (how many were redone or computed in float64).
    """
    if not AVAILABLE:
        raise RuntimeError("numba is not installed")
    if x.shape != y.shape or x.ndim != 3 or step < 1 or x.shape[2] % step:
        raise ValueError(f"bad shapes for the SSIM kernel: {x.shape}, {y.shape}, step {step}")
    if not supports(len(taps), x.shape[1], x.shape[2] // step):
        raise ValueError(f"the SSIM kernel does not support {len(taps)} taps on {x.shape}")
    if precision not in ("auto", "float64"):
        raise ValueError(f"precision must be 'auto' or 'float64', got {precision!r}")
    dtype = np.uint8 if x.dtype == np.uint8 and y.dtype == np.uint8 else np.float32
    x = np.ascontiguousarray(x, dtype=dtype)
    y = np.ascontiguousarray(y, dtype=dtype)
    out = np.empty(x.shape, np.float32)
    threads = max(1, min(threads, x.size // _MIN_VALUES_PER_THREAD))
    bands = band_count(x.shape[0], x.shape[1], threads)
    redone = np.zeros(x.shape[0] * bands, np.int64)
    half = padded_half_taps(taps)
    taps32, taps64 = tuple(np.float32(t) for t in half), half
    limit = ERROR_BOUND / _FLOAT32_UNIT if precision == "auto" else 0.0
    kernel = _kernel()
    run_parallel(
        lambda first, last: kernel(x, y, int(step), taps32, taps64, bands, first, last,
                                   float(data_range), float(k1), float(k2), bool(mri), limit,
                                   out, redone),
        x.shape[0] * bands, threads,
    )
    if stats is not None:
        stats.update(rows=x.shape[0] * x.shape[1], rows_float64=int(redone.sum()))
    return out
