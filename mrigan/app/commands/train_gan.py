"""``mrigan train-gan``: train the MRI-GAN generator (single process, or DDP under torchrun).

    mrigan train-gan --config configs/mri_gan_cpu.yaml --set data.root=runs/mri_df
    mrigan train-gan --config configs/mri_gan_cpu.yaml --set data.root=runs/mri_df --resume
    torchrun --nproc_per_node=2 -m mrigan.app.cli train-gan --config configs/mri_gan.yaml ...

Writes ``<out_dir>/<name>/`` (``runs/mri_gan/`` by default): ``config.yaml``,
``checkpoints/{last,best}.pt``, ``tb/`` (TensorBoard), ``eval_history.json``.
"""

from __future__ import annotations

import argparse
import logging
import sys

from mrigan import distributed
from mrigan.config import add_config_arguments, config_from_args
from mrigan.train import GanConfig, NonFiniteLossError, train_gan


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, default_config="configs/mri_gan.yaml")
    parser.add_argument("--resume", nargs="?", const=True, default=None, metavar="CHECKPOINT",
                        help="continue from <run>/checkpoints/last.pt (or the given checkpoint)")


def run(args: argparse.Namespace) -> int:

    cfg = config_from_args(GanConfig, args)
    with distributed.session() as dist:
        logging.basicConfig(level=logging.INFO if dist.is_main else logging.WARNING,
                            format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
        try:
            result = train_gan(cfg, resume=args.resume)
        except NonFiniteLossError as exc:
            print(f"mrigan train-gan: {exc}", file=sys.stderr)
            return 1
        if dist.is_main:
            print(f"trained {result.step} steps ({result.epoch} epochs) -> {result.run_dir}")
            print(f"best held-out mean SSIM {result.best_mean_ssim:.4f} at step "
                  f"{result.best_step}: {result.best_checkpoint}")
            print(f"last checkpoint: {result.last_checkpoint}")
    return 0
