"""``mrigan demo``: the smallest honest end-to-end run on data that ships with the packages.

Takes scikit-image's public-domain astronaut photo, makes a fake by blending a blurred,
colour-shifted copy of the face into it through a soft elliptic mask, computes the MRI, and
writes the real, fake, MRI and figures to ``--out``. (The full demo, with MRI-GAN training and
an analyst report, replaces this once those parts exist.)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from mrigan import perceptual
from mrigan.fileio import atomic_save_image, atomic_write_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder")


def make_demo_pair() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import cv2
    from skimage import data

    real = data.astronaut()  # 512x512 RGB, public domain
    h, w = real.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx, ry, rx = 130, 235, 85, 65  # the face
    mask = (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0).astype(np.float32)
    soft = cv2.GaussianBlur(mask, (0, 0), 6)[..., None]
    altered = cv2.GaussianBlur(real, (0, 0), 2.0).astype(np.float32) * [1.06, 0.97, 0.95]
    fake = np.clip(soft * altered + (1 - soft) * real, 0, 255).astype(np.uint8)
    return real, fake, mask > 0


def run(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    real, fake, mask = make_demo_pair()
    mri = perceptual.mri_map_np(real, fake)
    out: Path = args.out
    atomic_save_image(out / "real.png", real)
    atomic_save_image(out / "fake.png", fake)
    atomic_save_image(out / "mri.png", perceptual.mri_to_uint8(mri))
    inside, outside = float(mri[mask].mean()), float(mri[~mask].mean())
    summary = {"mri_mean_inside_face": inside, "mri_mean_outside_face": outside,
               "seconds": time.perf_counter() - t0}
    atomic_write_json(out / "summary.json", summary)
    print(f"MRI mean inside the altered face {inside:.4f}, outside {outside:.4f}")
    print(f"wrote {out / 'mri.png'} (and real.png, fake.png, summary.json)")
    return 0
