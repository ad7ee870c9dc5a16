"""Step 2 of the demo: train the MRI-GAN within a time budget and export the best checkpoint.

``train_for`` runs the trainer once under the training loop's ``train.max_minutes`` budget.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

from mrigan.app.demo.config import DemoConfig
from mrigan.inference import export_generator
from mrigan.train import GanConfig, replace, train_gan

_log = logging.getLogger(__name__)


def train_for(gan_cfg: GanConfig, minutes: float, log=_log.info):
    """Train until ``minutes`` (the loop's ``train.max_minutes`` budget) or ``max_steps``; the
    best held-out checkpoint is kept by the trainer."""

    t_start = time.monotonic()
    result = train_gan(replace(gan_cfg, train={"max_minutes": minutes}))
    ev = result.last_eval
    log(f"  step {result.step}: held-out mean SSIM {ev.get('mean_ssim', math.nan):.3f}, mean MRI "
        f"fake {ev.get('mri_mean_fake', math.nan):.3f} / real {ev.get('mri_mean_real', math.nan):.3f}"
        f" ({time.monotonic() - t_start:.0f} s)")
    return result


def train_and_export(cfg: DemoConfig, run_dir: Path, data_root: Path, log=_log.info):
    """Step 2: train within the time budget; export the best held-out checkpoint."""
    gan_cfg = replace(cfg.gan, name="gan", out_dir=str(run_dir), data={"root": str(data_root)})
    log(f"[2/4] training a {gan_cfg.model.image_size} px MRI-GAN for up to {cfg.train_minutes:g} "
         f"min -> {gan_cfg.run_dir}")
    result = train_for(gan_cfg, cfg.train_minutes, log)
    best = result.best_checkpoint or result.last_checkpoint
    weights, _sidecar = export_generator(best, run_dir / "generator.safetensors")
    return weights, result
