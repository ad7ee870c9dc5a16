"""Detector inference speed on CPU: EfficientNet-B0 + paper head at 224 px, batch 32.

Two paths, as ``mrigan evaluate`` / ``analyze`` run them:

* ``plain``: face crops -> detector;
* ``mri``:   face crops -> MRI-GAN generator (paper U-Net, 256 px; faces resized to it and
  back) -> detector. The generator is part of the cost of the MRI method.

Each path in fp32 and in bf16 autocast, measured in one process one after the other (the
machine is shared and noisy: compare the ratios, and rerun). Weights are random: speed does
not depend on them. Faces/s counts input faces.

    .venv/bin/python bench/detect.py [--batches 3] [--batch 32] [--size 224] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from detectors.config import DetectorModelConfig
from detectors.model import build_detector
from mrigan.device import autocast


def best_rate(fn, faces: torch.Tensor, batches: int, repeats: int) -> float:
    fn(faces)  # warm-up: allocator, oneDNN primitives
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(batches):
            fn(faces)
        best = max(best, batches * faces.shape[0] / (time.perf_counter() - t))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batches", type=int, default=2, help="batches per timing")
    ap.add_argument("--repeats", type=int, default=2, help="timings per setting (best kept)")
    ap.add_argument("--generator-size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device("cpu")

    from mrigan.inference import MRIGenerator
    from mrigan.models import define_generator

    detector = build_detector(DetectorModelConfig(backbone="efficientnet-b0", head="paper")).eval()
    generator = MRIGenerator(define_generator("mrigan", image_size=args.generator_size),
                             device=device, batch_size=args.batch)
    faces = torch.rand(args.batch, 3, args.size, args.size)

    def plain(precision: str):
        @torch.inference_mode()
        def run(x):
            with autocast(device, precision):
                return torch.sigmoid(detector(x).float())
        return run

    def mri(precision: str):
        @torch.inference_mode()
        def run(x):
            generator.precision = precision
            maps = generator.predict_tensor(x)
            with autocast(device, precision):
                return torch.sigmoid(detector(maps).float())
        return run

    def generator_only(precision: str):
        @torch.inference_mode()
        def run(x):
            generator.precision = precision
            return generator.predict_tensor(x)
        return run

    rows = []
    for name, make in (("plain (detector)", plain), ("mri (generator + detector)", mri),
                       ("  of which generator", generator_only)):
        rates = {p: best_rate(make(p), faces, args.batches, args.repeats)
                 for p in ("fp32", "bf16")}
        rows.append((name, rates["fp32"], rates["bf16"]))

    print(f"EfficientNet-B0 + paper head, {args.size} px, batch {args.batch}, CPU, "
          f"{torch.get_num_threads()} threads, {os.cpu_count()} cores; generator "
          f"{args.generator_size} px (paper U-Net); load average {os.getloadavg()[0]:.1f}")
    print(f"{'path':<28} {'fp32 faces/s':>13} {'bf16 faces/s':>13} {'bf16/fp32':>10}")
    for name, fp32, bf16 in rows:
        print(f"{name:<28} {fp32:>13.1f} {bf16:>13.1f} {bf16 / fp32:>9.2f}x")
    plain_fp32, mri_fp32 = rows[0][1], rows[1][1]
    print(f"MRI path costs {plain_fp32 / mri_fp32:.1f}x the plain path in fp32")


if __name__ == "__main__":
    main()
