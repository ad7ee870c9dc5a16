"""Tiny detector configs, data and a trained tiny detector shared by the detector and analyst
tests (tests/detectors/test_detectors_*.py, tests/app/test_analyze*.py)."""

from __future__ import annotations

from pathlib import Path

from datasets_builders.synthetic import write_synthetic_mri_df
from detectors.config import (
    DetectorConfig,
    DetectorDataConfig,
    DetectorInputConfig,
    DetectorModelConfig,
    DetectorTrainConfig,
)
from detectors.train import train_detector


def write_detector_mri_df(folder: Path) -> Path:
    """12 demo people at 48 px, 2 self-blended fakes each, a third of them for validation."""
    return write_synthetic_mri_df(folder, n_faces=12, size=48, fakes_per_face=2,
                                  val_fraction=0.34, seed=1)


def tiny_detector_config(root: Path, out: Path, name: str, *, epochs: int = 3,
                         **train) -> DetectorConfig:
    """A tiny-cnn plain detector at 32 px on ``root``, one CPU thread's worth of work."""
    base = dict(epochs=epochs, batch_size=6, lr=1e-3, device="cpu", precision="fp32",
                augment=("flip", "color_jitter", "random_resized_crop"), log_every=1)
    base.update(train)
    return DetectorConfig(name=name, out_dir=str(out),
                          model=DetectorModelConfig(backbone="tiny-cnn"),
                          data=DetectorDataConfig(root=str(root), image_size=32, workers=0),
                          train=DetectorTrainConfig(**base))


def train_tiny_plain_detector(base: Path) -> Path:
    """A tiny-cnn plain detector trained for 2 steps on 8 synthetic 64 px faces (under
    ``base``): weights that load and score, not a good detector. Returns its best.pt."""
    root = write_synthetic_mri_df(base / "syn_df", n_faces=8, size=64)
    trained = train_detector(DetectorConfig(
        name="det", out_dir=str(base / "det_runs"), model=DetectorModelConfig(backbone="tiny-cnn"),
        input=DetectorInputConfig(name="plain"),
        data=DetectorDataConfig(root=str(root), image_size=64, workers=0),
        train=DetectorTrainConfig(max_steps=2, batch_size=4, device="cpu", precision="fp32",
                                  augment=("flip",))), log=lambda *a: None)
    return trained.best_checkpoint
