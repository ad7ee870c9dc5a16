"""``mrigan train-gan``: train the MRI-GAN generator (single process, or DDP under torchrun).

    mrigan train-gan --config configs/mri_gan_cpu.yaml --set data.root=runs/mri_df
    mrigan train-gan --config configs/mri_gan_cpu.yaml --set data.root=runs/mri_df --restart
    torchrun --nproc_per_node=2 -m mrigan.app.cli train-gan --config configs/mri_gan.yaml ...

Rerunning continues the run from its ``last.pt`` (exactly; settings that change the models
are refused), ``--resume CHECKPOINT`` from another file, ``--restart`` starts it anew.
Writes ``<out_dir>/<name>/`` (``runs/mri_gan/`` by default): ``config.yaml``,
``checkpoints/{last,best}.pt``, ``tb/`` (TensorBoard), ``eval_history.json``.

Everything a user gives is checked before any work (:func:`check_gan_config`): the config's
keys, types and ranges, the data root and its manifest, the device, the model (built on the
``meta`` device: no memory), the resume checkpoint, and that the run folder is not inside the
data. A bad value ends in one line naming the key or file (exit 2, from ``mrigan.app.cli``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch

from mrigan import distributed
from mrigan.app.logs import set_format
from mrigan.checkpoint import CheckpointError
from mrigan.config import ConfigError, add_config_arguments, config_from_args, require_path
from mrigan.device import resolve_device
from mrigan.errors import MriganError
from mrigan.models import define_discriminator, define_generator
from mrigan.mri_df_format import read_manifest, require_metric
from mrigan.outputs import check_output_dir
from mrigan.train import GanConfig, NonFiniteLossError, train_gan


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, default_config="configs/mri_gan.yaml")
    parser.add_argument("--resume", nargs="?", const=True, default=None, metavar="CHECKPOINT",
                        help="continue from the given checkpoint (default: train.resume, "
                             "true unless set: from <run>/checkpoints/last.pt when the run "
                             "has one)")
    parser.add_argument("--restart", dest="resume", action="store_false",
                        help="start the run anew, replacing its checkpoints")


def check_gan_config(cfg: GanConfig, resume: bool | str | None, where: str) -> None:
    """Up-front validation of a GAN run (see the module docstring)."""
    root = require_path(cfg.data.root, "data.root", kind="dir", where=where,
                        hint="an MRI-DF folder from `mrigan build-dataset`")
    require_path(root / "manifest.csv", "data.root", where=where,
                 hint="the MRI-DF folder must hold manifest.csv (build one with "
                      "`mrigan build-dataset`)")
    require_metric(read_manifest(root), cfg.data.mri_metric, root / "manifest.csv",
                   what=f"data.mri_metric of {where}")
    resolve_device(cfg.train.device)
    m = cfg.model
    try:
        with torch.device("meta"):
            define_generator(m.generator, m.image_size, init=False, **m.generator_kwargs())
            define_discriminator(m.discriminator, init=False, ndf=m.ndf)
    except MriganError:  # e.g. the encoder's weights package is not installed: its own line
        raise
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: model section cannot be built: {exc}") from exc
    if resume not in (None, True, False) and not Path(resume).is_file():
        raise CheckpointError("no checkpoint to resume from (--resume)", resume)
    check_output_dir(cfg.run_dir, [root])


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(GanConfig, args)
    check_gan_config(cfg, args.resume, args.config or "GanConfig")
    with distributed.session() as dist:
        set_format("%(asctime)s %(message)s", "%H:%M:%S", progress_to_stderr=True,
                   level=None if dist.is_main else logging.WARNING)
        try:
            result = train_gan(cfg, resume=args.resume)
        except NonFiniteLossError as exc:  # the run diverged (exit 1), not a bad input (exit 2)
            print(f"mrigan train-gan: {exc}", file=sys.stderr)
            return 1
        if dist.is_main:
            print(f"trained {result.step} steps ({result.epoch} epochs) -> {result.run_dir}")
            figure = {"mean_ssim": "mean SSIM", "select": "(face AUC + pixel AUC) / 2",
                      "face_auc": "face AUC", "pixel_auc": "pixel AUC",
                      "fake_ssim": "SSIM of fakes"}.get(result.select_by, result.select_by)
            best = result.best_value if result.best_value is not None else float("nan")
            print(f"best held-out {figure} {best:.4f} at step "
                  f"{result.best_step}: {result.best_checkpoint} (trained in {result.precision})")
            print(f"last checkpoint: {result.last_checkpoint}")
    return 0
