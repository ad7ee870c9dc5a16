"""MRI maps of 256x256 RGB pairs: scikit-image one pair at a time vs ``mri_map`` batched.

``mri_map`` computes in float32 and redoes in float64 the rows whose error bound exceeds
``mrigan._ssim_cpu.ERROR_BOUND``; "v0.1 path" is the code before that change, rebuilt here
from its parts (``torch.isfinite`` check, float64 kernel), so before and after run side by side.
The goal line of issue 24 (>= 10x scikit-image) is printed with the CPU's name and its AVX-512 /
bf16 flags. Parity is measured on the benchmark's pairs and on a real FaceForensics++ frame pair
(``../shared/data/ff_examples``, when present), borders included, for every fast path.

All methods run on the same inputs in one process, interleaved repeat by repeat, and the best
repeat of each is kept, so the ratios are measured side by side on the same (shared, noisy)
machine. "pairs/CPU-s" divides by the process's CPU time instead of wall time: it shows the
code's efficiency even when other jobs take the cores. Parity with scikit-image is checked
on the benchmark's own pairs, borders included.

    .venv/bin/python bench/perceptual.py [--pairs 256] [--batch 64] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

import numba
import numpy as np
import torch
from skimage.metrics import structural_similarity

from mrigan import _ssim_cpu, perceptual
from mrigan.device import cpu_description
from mrigan.fileio import read_image

ROOT = Path(__file__).resolve().parents[1]
FF_EXAMPLES = Path(os.environ.get("MRIGAN_SHARED_DATA", ROOT.parent / "shared" / "data")) / "ff_examples"


def skimage_mri(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The paper's MRI: scikit-image's full SSIM image with its settings, 1 - SSIM, clipped."""
    s = structural_similarity(a, b, channel_axis=-1, full=True, gaussian_weights=True, sigma=1.5,
                              use_sample_covariance=False, data_range=255)[1]
    return np.clip(1 - s, 0, 1)


def v01_mri_map(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """``mri_map`` as it was before float32: ``torch.isfinite`` checks, the float64 kernel."""
    for t in (real, fake):
        if not bool(torch.isfinite(t).all()):
            raise ValueError("non-finite input")
    n, c, h, w = real.shape
    planes = [t.float().contiguous().numpy().reshape(n * c, h, w) for t in (real, fake)]
    out = _ssim_cpu.ssim_rows(*planes, step=1, taps=perceptual._gaussian_taps_np(11, 1.5),
                              data_range=255.0, k1=0.01, k2=0.03, mri=True,
                              threads=torch.get_num_threads(), precision="float64")
    return torch.from_numpy(out.reshape(n, c, h, w))


def avx512_flags() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            flags = next((line.split(":", 1)[1].split() for line in fh
                          if line.startswith("flags")), [])
    except OSError:
        return "flags unknown"
    avx512 = sorted(f for f in flags if f.startswith("avx512"))
    return f"AVX-512: {', '.join(avx512) if avx512 else 'none'}"


def frames_parity() -> str:
    """Max |MRI - scikit-image| on the real FF++ example pair (480x640), uint8 and float32
    inputs, with the share of rows the kernel redid in float64."""
    if not FF_EXAMPLES.is_dir():
        return f"real frames: {FF_EXAMPLES} not found (set MRIGAN_SHARED_DATA), skipped"
    real = read_image(FF_EXAMPLES / "ex_original.png")
    fake = read_image(FF_EXAMPLES / "ex_deepfakes.png")
    ref = skimage_mri(real, fake)
    errs = [np.abs(perceptual.mri_map_np(real.astype(dt), fake.astype(dt), data_range=255) - ref)
            .max() for dt in (np.uint8, np.float32)]
    stats: dict = {}
    _ssim_cpu.ssim_rows(real.reshape(1, 480, -1), fake.reshape(1, 480, -1), step=3,
                        taps=perceptual._gaussian_taps_np(11, 1.5), data_range=255.0, k1=0.01,
                        k2=0.03, mri=True, stats=stats)
    return (f"real FF++ frame pair 480x640: max |MRI - scikit-image| uint8 {errs[0]:.1e}, float32 "
            f"{errs[1]:.1e}; rows redone in float64 {stats['rows_float64']}/{stats['rows']}")


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """Wall and process-CPU seconds of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=256, help="pairs per timed run of mrigan")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--sk-pairs", type=int, default=48, help="pairs per timed run of scikit-image")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (args.pairs, args.size, args.size, 3), dtype=np.uint8)
    fake = np.clip(real + rng.normal(0, 12, real.shape), 0, 255).astype(np.uint8)
    # how frames arrive: HWC uint8 -> float tensors, a channels-last view of the same pixels
    real_cl = torch.from_numpy(real).permute(0, 3, 1, 2).float()
    fake_cl = torch.from_numpy(fake).permute(0, 3, 1, 2).float()
    real_nchw, fake_nchw = real_cl.contiguous(), fake_cl.contiguous()
    real_u8 = torch.from_numpy(real).permute(0, 3, 1, 2)  # uint8, channels-last view
    fake_u8 = torch.from_numpy(fake).permute(0, 3, 1, 2)
    n_sk = min(args.pairs, args.sk_pairs)
    load_before = os.getloadavg()[0]

    first_call = timed(lambda: perceptual.mri_map(real_cl[:1], fake_cl[:1], data_range=255))[0]
    skimage_mri(real[0], fake[0])

    def batched(r: torch.Tensor, f: torch.Tensor, fn=None) -> Callable[[], None]:
        fn = fn or (lambda a, b: perceptual.mri_map(a, b, data_range=255))

        def run() -> None:
            with torch.no_grad():
                for i in range(0, args.pairs, args.batch):
                    fn(r[i : i + args.batch], f[i : i + args.batch])
        return run

    methods: dict[str, tuple[int, Callable[[], None]]] = {
        "scikit-image, one pair at a time": (
            n_sk, lambda: [skimage_mri(real[i], fake[i]) for i in range(n_sk)]),
        f"mri_map, batch {args.batch}, channels-last": (args.pairs, batched(real_cl, fake_cl)),
        f"mri_map, batch {args.batch}, NCHW": (args.pairs, batched(real_nchw, fake_nchw)),
        f"mri_map, batch {args.batch}, uint8 (integer path)": (args.pairs,
                                                              batched(real_u8, fake_u8)),
        f"v0.1 path (float64 kernel), batch {args.batch}, NCHW": (
            args.pairs, batched(real_nchw, fake_nchw, v01_mri_map)),
        "mri_map_np, one uint8 pair at a time": (
            n_sk, lambda: [perceptual.mri_map_np(real[i], fake[i]) for i in range(n_sk)]),
    }
    best = {name: (np.inf, np.inf) for name in methods}
    for _ in range(args.repeats):
        for name, (_, run) in methods.items():
            wall, cpu = timed(run)
            best[name] = (min(best[name][0], wall), min(best[name][1], cpu))

    with torch.no_grad():
        ours_cl = perceptual.mri_map(real_cl[:8], fake_cl[:8], data_range=255).permute(0, 2, 3, 1)
        ours_nchw = perceptual.mri_map(real_nchw[:8], fake_nchw[:8], data_range=255)
        ours_u8 = perceptual.mri_map(real_u8[:8], fake_u8[:8], data_range=255).permute(0, 2, 3, 1)
        same = perceptual.mri_map(real_cl[:8], real_cl[:8].clone(), data_range=255)
    ref = np.stack([skimage_mri(real[i], fake[i]) for i in range(8)])
    err = max(np.abs(ours_cl.numpy() - ref).max(), np.abs(ours_u8.numpy() - ref).max(),
              np.abs(ours_nchw.permute(0, 2, 3, 1).numpy() - ref).max())

    threads = torch.get_num_threads()
    print(f"CPU: {cpu_description()}; {avx512_flags()}")
    print(f"MRI maps of {args.size}x{args.size} RGB pairs; {os.cpu_count()} CPU cores, load average "
          f"{load_before:.1f} -> {os.getloadavg()[0]:.1f}; best of {args.repeats}")
    target = numba.config.CPU_NAME or "host CPU"
    print(f"mrigan kernel: numba {numba.__version__} compiling for {target} (NUMBA_CPU_NAME), nogil, {threads} Python threads per call "
          f"(torch.get_num_threads); first call in this process (compile or disk-cache load) "
          f"{first_call:.2f} s")
    sk_rate = n_sk / best["scikit-image, one pair at a time"][0]
    sk_cpu_rate = n_sk / best["scikit-image, one pair at a time"][1]
    print(f"{'method':<52}{'pairs/s':>9}{'ratio':>8}{'pairs/CPU-s':>13}{'ratio':>8}")
    ratios = {}
    for name, (n, _) in methods.items():
        rate, cpu_rate = n / best[name][0], n / max(best[name][1], 1e-9)
        ratios[name] = rate / sk_rate
        print(f"{name:<52}{rate:>9.1f}{rate / sk_rate:>7.1f}x{cpu_rate:>13.1f}"
              f"{cpu_rate / sk_cpu_rate:>7.1f}x")
    print(f"parity: max |MRI - scikit-image| over 8 pairs, borders included, float32 channels-last, "
          f"NCHW and uint8: {err:.2e}; identical pairs: max MRI {same.max().item():.1f}")
    print(frames_parity())
    name = f"mri_map, batch {args.batch}, NCHW"
    old = f"v0.1 path (float64 kernel), batch {args.batch}, NCHW"
    print(f"goal (issue 24: MRI maps >= 10x scikit-image, parity <= 1e-4): {name} "
          f"{ratios[name]:.1f}x ({'met' if ratios[name] >= 10 else 'NOT met'}; before: "
          f"{ratios[old]:.1f}x, same run), max parity error {err:.1e} on {cpu_description()}")


if __name__ == "__main__":
    main()
