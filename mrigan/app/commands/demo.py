"""``mrigan demo``: the whole MRI-GAN pipeline, end to end, on a CPU in a few minutes.

With no data and no download, it:

1. builds a small MRI-DF set from the two public-domain portraits that ship inside installed
   packages (scikit-image's astronaut, Eileen Collins; matplotlib's Grace Hopper): many
   "scenes" per photo (random pose, scale, position, lighting, mirror), a self-blended fake of
   each (``datasets_builders.synthetic.self_blend`` pasted back into the frame), a seeded
   augmentation plan applied identically to the real and the fake scene
   (``datasets_builders.augment``), MTCNN on the real scene, the same square crop from both,
   and ``MRI = clip(1 - SSIM(real crop, fake crop), 0, 1)``; scenes are split train/val/test;
2. trains a 64 px MRI-GAN for ``train_minutes`` (the training loop's ``max_minutes`` budget,
   keeping the checkpoint with the best held-out mean SSIM) and exports it as .safetensors;
3. measures it on the test scenes (mean SSIM of generated vs true MRIs, mean generated MRI of
   fakes vs reals) and picks the face threshold of the verdict on the validation scenes only;
4. writes short H.264 videos of unseen scenes (a moving camera; some segments fake, some real)
   and runs ``mrigan analyze`` on them: report.html, results.json, maps and overlays.

``--set data.root=PATH`` (with ``data.kind``: ffpp, dfdc, celebdf, csv, images) builds MRI-DF from
a real dataset with ``datasets_builders.build_mri_df`` instead, and analyses held-out (test, else
validation) videos of that dataset instead of the synthetic ones.

Everything goes under ``<out_dir>/<name>/`` (default ``runs/demo``), with the resolved config.

The steps live in :mod:`mrigan.app.demo` (``config``, ``scenes``, ``data``, ``training``,
``calibration``, ``videos``, ``run``); this module is the command line only.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mrigan.app.demo.config import load_demo_config
from mrigan.app.demo.run import run_demo
from mrigan.config import add_config_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--out", type=Path, default=None,
                        help="run folder (default: <out_dir>/<name>, i.e. runs/demo)")


def run(args: argparse.Namespace) -> int:
    cfg = load_demo_config(args.config, args.overrides)
    return run_demo(cfg, args.out or cfg.run_dir)
