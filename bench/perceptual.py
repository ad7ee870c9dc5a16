"""MRI maps of 256x256 RGB pairs: scikit-image one pair at a time vs ``mri_map`` batched.

Both run on the same inputs in one process, one after the other, so the printed ratio is
measured side by side on the same (shared, noisy) machine. Also checks parity.

    .venv/bin/python bench/perceptual.py [--pairs 256] [--batch 64]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from skimage.metrics import structural_similarity

from mrigan import perceptual


def skimage_mri(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    s = structural_similarity(a, b, channel_axis=-1, full=True, gaussian_weights=True, sigma=1.5,
                              use_sample_covariance=False, data_range=255)[1]
    return np.clip(1 - s, 0, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=256)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (args.pairs, args.size, args.size, 3), dtype=np.uint8)
    noise = rng.normal(0, 12, real.shape)
    fake = np.clip(real + noise, 0, 255).astype(np.uint8)
    rt = torch.from_numpy(real).permute(0, 3, 1, 2).float()
    ft = torch.from_numpy(fake).permute(0, 3, 1, 2).float()

    # warm-up (JIT compile of the fused kernel, thread pools)
    perceptual.mri_map(rt[: args.batch], ft[: args.batch], data_range=255)
    skimage_mri(real[0], fake[0])

    n_sk = min(args.pairs, 64)
    best_sk, best_ours = 0.0, 0.0
    for _ in range(args.repeats):
        t = time.perf_counter()
        for i in range(n_sk):
            skimage_mri(real[i], fake[i])
        best_sk = max(best_sk, n_sk / (time.perf_counter() - t))
        t = time.perf_counter()
        for i in range(0, args.pairs, args.batch):
            perceptual.mri_map(rt[i : i + args.batch], ft[i : i + args.batch], data_range=255)
        best_ours = max(best_ours, args.pairs / (time.perf_counter() - t))

    ours = perceptual.mri_map(rt[:4], ft[:4], data_range=255).permute(0, 2, 3, 1).numpy()
    err = max(np.abs(ours[i] - skimage_mri(real[i], fake[i])).max() for i in range(4))
    print(f"MRI maps, {args.size}x{args.size} RGB, {os.cpu_count()} CPU cores, torch threads "
          f"{torch.get_num_threads()}, best of {args.repeats}")
    print(f"{'method':<34}{'pairs/s':>10}")
    print(f"{'scikit-image, one pair at a time':<34}{best_sk:>10.1f}")
    print(f"{'mrigan mri_map, batch ' + str(args.batch):<34}{best_ours:>10.1f}")
    print(f"ratio: {best_ours / best_sk:.1f}x   max |diff| vs scikit-image: {err:.2e}")


if __name__ == "__main__":
    main()
