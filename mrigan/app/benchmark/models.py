"""Stages 3-5: MRI-GAN on the training identities' MRI-DF, its export, and the plain and MRI
detectors (one backbone, one budget; the MRI detector reads the exported generator's MRIs).

Each stage's settings are its *resolved* library config without output paths, so an edited
preset or base YAML that changes what a stage does is noticed on the next run.
"""

from __future__ import annotations

from pathlib import Path

from detectors.config import DetectorConfig
from detectors.train import train_detector
from mrigan.app.benchmark.config import BenchmarkConfig
from mrigan.app.benchmark.stages import BenchmarkError
from mrigan.config import deep_merge, load_config, to_dict
from mrigan.inference import export_generator
from mrigan.train import GanConfig, train_gan

#: resolved-config keys that say where things go, not what is computed
_PATH_KEYS = {("out_dir",), ("name",), ("data", "root"), ("input", "generator"),
              ("input", "mri_cache"), ("train", "resume")}


def _without_paths(d: dict, prefix: tuple = ()) -> dict:
    return {k: (_without_paths(v, (*prefix, k)) if isinstance(v, dict) else v)
            for k, v in d.items() if (*prefix, k) not in _PATH_KEYS}


def gan_config(cfg: BenchmarkConfig, mri_df_root: str, folder: Path) -> GanConfig:
    extra = {"out_dir": str(folder), "name": "run", "data": {"root": mri_df_root}}
    if cfg.device != "auto":
        extra["train"] = {"device": cfg.device}
    return load_config(GanConfig, cfg.gan.config, deep_merge(cfg.gan.set, extra))


#: GAN settings added after benchmark runs were already being made, with the value that
#: reproduces the older runs: left out of the stage's settings while they hold it, so a run
#: folder made before they existed still resumes (any other value is refused as a change)
GAN_ADDED_LATER = {("model", "encoder_weights"): "imagenet", ("model", "mri_prior"): False,
                   ("loss", "ssim_on"): "all", ("loss", "manipulated_weight"): 0.0,
                   ("optim", "lr_d_factor"): 1.0, ("train", "select_by"): "mean_ssim"}


def gan_settings(cfg: BenchmarkConfig) -> dict:
    """The GAN stage's settings: the resolved config without output paths, and without the
    :data:`GAN_ADDED_LATER` settings while they hold their older runs' values."""
    settings = _without_paths(to_dict(gan_config(cfg, "", Path("."))))
    for (section, key), old in GAN_ADDED_LATER.items():
        if settings.get(section, {}).get(key, old) == old:
            settings.get(section, {}).pop(key, None)
    return settings


def gan_stage(cfg: BenchmarkConfig, mri_df_root: str, folder: Path) -> dict:
    gcfg = gan_config(cfg, mri_df_root, folder)
    last = Path(gcfg.run_dir) / "checkpoints" / "last.pt"
    result = train_gan(gcfg, resume=True if last.is_file() else None)
    best = result.best_checkpoint or result.last_checkpoint
    return {"checkpoint": str(best), "step": result.step, "best_step": result.best_step,
            "best_val_mean_ssim": result.best_mean_ssim, "used": "best" if
            result.best_checkpoint else "last", "precision": result.precision}


def export_stage(checkpoint: str, folder: Path) -> dict:
    weights, sidecar = export_generator(checkpoint, folder / "generator.safetensors")
    return {"generator": str(weights), "sidecar": str(sidecar)}


def detector_config(cfg: BenchmarkConfig, kind: str, mri_df_root: str, folder: Path,
                    generator: str = "") -> DetectorConfig:
    d = cfg.detector
    extra: dict = {"out_dir": str(folder), "name": "run", "data": {"root": mri_df_root}}
    if cfg.device != "auto":
        extra["train"] = {"device": cfg.device}
    if kind == "mri":
        extra["input"] = {"name": "mri", "generator": generator,
                          "mri_cache": str(folder / "mri_cache")}
    path = d.plain_config if kind == "plain" else d.mri_config
    return load_config(DetectorConfig, path, deep_merge(d.set, extra))


#: detector settings added after benchmark runs were already being made, with the value that
#: reproduces the older runs (left out of the stage's settings while they hold it, as for
#: :data:`GAN_ADDED_LATER`)
DETECTOR_ADDED_LATER = {("data", "train_fakes"): "all"}


def detector_settings(cfg: BenchmarkConfig, kind: str) -> dict:
    settings = _without_paths(to_dict(detector_config(cfg, kind, "", Path("."))))
    for (section, key), old in DETECTOR_ADDED_LATER.items():
        if settings.get(section, {}).get(key, old) == old:
            settings.get(section, {}).pop(key, None)
    return settings


def check_detector_data(cfg: BenchmarkConfig) -> None:
    """Refuse, before any stage runs, a fake source the build will not make: self-blends only
    (``detector.set.data.train_fakes: self_blend``, SBI) with ``data.self_blend_per_real`` 0."""
    for kind in ("plain", "mri"):
        if (detector_config(cfg, kind, "", Path(".")).data.train_fakes == "self_blend"
                and not cfg.data.self_blend_per_real):
            raise BenchmarkError("detector data.train_fakes=self_blend trains on self-blends "
                                 "only, but data.self_blend_per_real is 0 (no self-blend is "
                                 "built)", None)


def detector_stage(cfg: BenchmarkConfig, kind: str, mri_df_root: str, folder: Path,
                   generator: str = "", log=print) -> dict:
    dcfg = detector_config(cfg, kind, mri_df_root, folder, generator)
    result = train_detector(dcfg, log=log)
    return {"checkpoint": str(result.best), "best_val_auc": result.best_auc,
            "best_epoch": result.best_epoch, "steps": result.steps,
            "run_dir": str(result.run_dir)}


__all__ = ["DETECTOR_ADDED_LATER", "check_detector_data", "detector_config", "detector_settings", "detector_stage", "export_stage",
           "GAN_ADDED_LATER", "gan_config", "gan_settings", "gan_stage"]
