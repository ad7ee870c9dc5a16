"""MRI maps of 256x256 RGB pairs: scikit-image one pair at a time vs ``mri_map`` batched.

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

import numba
import numpy as np
import torch
from skimage.metrics import structural_similarity

from mrigan import perceptual


def skimage_mri(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The paper's MRI: scikit-image's full SSIM image with its settings, 1 - SSIM, clipped."""
    s = structural_similarity(a, b, channel_axis=-1, full=True, gaussian_weights=True, sigma=1.5,
                              use_sample_covariance=False, data_range=255)[1]
    return np.clip(1 - s, 0, 1)


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
    n_sk = min(args.pairs, args.sk_pairs)
    load_before = os.getloadavg()[0]

    first_call = timed(lambda: perceptual.mri_map(real_cl[:1], fake_cl[:1], data_range=255))[0]
    skimage_mri(real[0], fake[0])

    def batched(r: torch.Tensor, f: torch.Tensor) -> Callable[[], None]:
        def run() -> None:
            with torch.no_grad():
                for i in range(0, args.pairs, args.batch):
                    perceptual.mri_map(r[i : i + args.batch], f[i : i + args.batch], data_range=255)
        return run

    methods: dict[str, tuple[int, Callable[[], None]]] = {
        "scikit-image, one pair at a time": (
            n_sk, lambda: [skimage_mri(real[i], fake[i]) for i in range(n_sk)]),
        f"mri_map, batch {args.batch}, channels-last": (args.pairs, batched(real_cl, fake_cl)),
        f"mri_map, batch {args.batch}, NCHW": (args.pairs, batched(real_nchw, fake_nchw)),
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
        same = perceptual.mri_map(real_cl[:8], real_cl[:8].clone(), data_range=255)
    ref = np.stack([skimage_mri(real[i], fake[i]) for i in range(8)])
    err = max(np.abs(ours_cl.numpy() - ref).max(),
              np.abs(ours_nchw.permute(0, 2, 3, 1).numpy() - ref).max())

    threads = torch.get_num_threads()
    print(f"MRI maps of {args.size}x{args.size} RGB pairs; {os.cpu_count()} CPU cores, load average "
          f"{load_before:.1f} -> {os.getloadavg()[0]:.1f}; best of {args.repeats}")
    print(f"mrigan kernel: numba {numba.__version__}, nogil, {threads} Python threads per call "
          f"(torch.get_num_threads); first call in this process (compile or disk-cache load) "
          f"{first_call:.2f} s")
    sk_rate = n_sk / best["scikit-image, one pair at a time"][0]
    print(f"{'method':<42}{'pairs/s':>9}{'ratio':>8}{'pairs/CPU-s':>13}")
    for name, (n, _) in methods.items():
        rate = n / best[name][0]
        print(f"{name:<42}{rate:>9.1f}{rate / sk_rate:>7.1f}x"
              f"{n / max(best[name][1], 1e-9):>13.1f}")
    print(f"parity: max |MRI - scikit-image| over 8 pairs, borders included, both layouts: "
          f"{err:.2e}; identical pairs: max MRI {same.max().item():.1f}")


if __name__ == "__main__":
    main()
