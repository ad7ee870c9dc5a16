"""Stages 3-5: MRI-GAN on the training identities' MRI-DF, its export, and the plain and MRI
detectors (one backbone, one budget; the MRI detector reads the exported generator's MRIs).

Each stage's settings are its library config (``cfg.gan``, ``cfg.detector.plain`` / ``.mri``,
resolved when the benchmark config was loaded) with the stage's own paths and device, less
those paths, so an edited preset or base YAML that changes what a stage does is noticed on the
next run.
"""

from __future__ import annotations

import logging
from pathlib import Path

from detectors.config import DetectorConfig
from detectors.train import train_detector
from mrigan import fingerprint as settings_fp
from mrigan.app.benchmark.config import BenchmarkConfig
from mrigan.config import replace_keys
from mrigan.inference import export_generator
from mrigan.train import GanConfig, train_gan

_log = logging.getLogger(__name__)

#: inputs a stage's settings name by the fingerprints of the stages that made them instead
_INPUT_KEYS = ("data.root", "input.generator", "input.mri_cache")


def _stage_settings(config) -> dict:
    """A library config as a stage's settings (:mod:`mrigan.fingerprint`): without where it
    writes, its inputs (above) and added-later settings at their older value; with its runtime
    settings, which the stage records made before this mechanism held (so they still resume)."""
    return settings_fp.settings(config, ignore=_INPUT_KEYS, keep_runtime=True)


def gan_config(cfg: BenchmarkConfig, mri_df_root: str, folder: Path) -> GanConfig:
    extra = {"out_dir": str(folder), "name": "run",
             "data": {"root": mri_df_root, "mri_metric": cfg.data.mri_metric}}
    if cfg.device != "auto":
        extra["train"] = {"device": cfg.device}
    return replace_keys(cfg.gan, extra, "gan")


#: GAN settings added after benchmark runs were already being made, with the value that
#: reproduces the older runs (``added_later`` metadata of ``GanConfig``'s fields): left out of
#: the stage's settings while they hold it, so a run folder made before they existed still
#: resumes (any other value is refused as a change)
GAN_ADDED_LATER = {tuple(k.split(".")): v
                   for k, v in settings_fp.added_later_fields(GanConfig).items()}


def gan_settings(cfg: BenchmarkConfig) -> dict:
    """The GAN stage's settings: the resolved config (see :func:`_stage_settings`)."""
    return _stage_settings(gan_config(cfg, "", Path(".")))


def gan_stage(cfg: BenchmarkConfig, mri_df_root: str, folder: Path) -> dict:
    gcfg = gan_config(cfg, mri_df_root, folder)
    result = train_gan(gcfg, resume=True)
    best = result.best_checkpoint or result.last_checkpoint
    return {"checkpoint": str(best), "step": result.step, "best_step": result.best_step,
            "best_val_mean_ssim": result.best_value, "used": "best" if
            result.best_checkpoint else "last", "precision": result.precision}


def export_stage(checkpoint: str, folder: Path) -> dict:
    weights, sidecar = export_generator(checkpoint, folder / "generator.safetensors")
    return {"generator": str(weights), "sidecar": str(sidecar)}


def detector_config(cfg: BenchmarkConfig, kind: str, mri_df_root: str, folder: Path,
                    generator: str = "") -> DetectorConfig:
    extra: dict = {"out_dir": str(folder), "name": "run", "data": {"root": mri_df_root}}
    if cfg.device != "auto":
        extra["train"] = {"device": cfg.device}
    if kind == "mri":
        extra["input"] = {"name": "mri", "generator": generator,
                          "mri_cache": str(folder / "mri_cache")}
    base = cfg.detector.plain if kind == "plain" else cfg.detector.mri
    return replace_keys(base, extra, f"detector.{kind}")


def detector_settings(cfg: BenchmarkConfig, kind: str) -> dict:
    return _stage_settings(detector_config(cfg, kind, "", Path(".")))


def detector_stage(cfg: BenchmarkConfig, kind: str, mri_df_root: str, folder: Path,
                   generator: str = "", log=_log.info) -> dict:
    dcfg = detector_config(cfg, kind, mri_df_root, folder, generator)
    result = train_detector(dcfg, log=log)
    return {"checkpoint": str(result.best_checkpoint), "best_val_auc": result.best_value,
            "best_epoch": result.best_epoch, "steps": result.step,
            "run_dir": str(result.run_dir)}


__all__ = ["detector_config", "detector_settings", "detector_stage", "export_stage",
           "GAN_ADDED_LATER", "gan_config", "gan_settings", "gan_stage"]
