"""Tiny MRI-GAN configs and data shared by the tests/test_gan_*.py files."""

from __future__ import annotations

import json
from pathlib import Path

from mrigan.config import load_config
from mrigan.train import GanConfig


def tiny_config(data_root: Path, out_dir: Path, name: str, *, size: int = 32, width: int = 4,
                dropout: float = 0.5, loss: dict | None = None, **train) -> GanConfig:
    """A 32 px, 4-channel-base MRI-GAN that runs a step in milliseconds on one CPU core."""
    train_cfg = {"batch_size": 4, "epochs": 1000, "max_steps": 6, "device": "cpu",
                 "precision": "fp32", "channels_last": False, "log_every": 2, "eval_every": 3,
                 "checkpoint_every": 3, "grid_rows": 4, **train}
    return load_config(GanConfig, None, {
        "name": name, "out_dir": str(out_dir),
        "model": {"image_size": size, "ngf": width, "ndf": width, "dropout": dropout},
        "loss": loss or {},
        "data": {"root": str(data_root), "eval_samples": 8},
        "train": train_cfg})


class Killed(Exception):
    """Stands in for SIGKILL: raised from a step callback, nothing is saved after it."""


def kill_at(step: int):
    """A ``train_gan`` step callback that raises :class:`Killed` at ``step``."""
    def callback(trainer, at, terms):
        if at == step:
            raise Killed
    return callback


def write_tiny_generator(path: Path, size: int = 64, seed: int = 0) -> Path:
    """An untrained small MRI-GAN U-Net saved in the exported format (architecture in the
    safetensors header), read back by MRIGenerator.load like a real export."""
    import torch
    from safetensors.torch import save_file

    from mrigan.models import define_generator

    torch.manual_seed(seed)
    net = define_generator("mrigan", image_size=size, ngf=8)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path),
              metadata={"mrigan": json.dumps({"architecture": net.architecture})})
    return path
