"""The demo's configuration (``DemoConfig``) and its loader (``configs/demo.yaml`` + ``--set``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mrigan.app.analysis import (
    AnalyzeConfig,
    AnalyzeFacesConfig,
    AnalyzeFramesConfig,
    AnalyzeVerdictConfig,
)
from mrigan.config import (
    RUN_NAME,
    Checked,
    deep_merge,
    from_dict,
    parse_overrides,
    read_yaml,
    resolve_config_path,
    to_dict,
)
from mrigan.losses import GanLossConfig
from mrigan.train import GanConfig, GanDataConfig, GanModelConfig, GanTrainConfig

DEFAULT_CONFIG = Path("configs/demo.yaml")


# ----------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class DemoSceneConfig:
    scenes_per_photo: int = 80  # each scene gives one real and one fake pair
    scene_size: int = 320  # side of the square synthetic frames (px)
    face_fraction: tuple[float, float] = (0.38, 0.58)  # face square side / frame side
    quality: tuple[float, float] = (0.0, 0.4)  # blend quality range (graded_params; 1 = subtle)
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    augment_fraction: float = 0.3  # scenes given one augmentation (noise, blur, rotation, ...)
    distraction_fraction: float = 0.1  # scenes given a text/shape distraction


@dataclass(frozen=True)
class DemoDataConfig(Checked):
    root: str = ""  # a real dataset folder; empty: synthetic scenes from packaged photos
    kind: str = "ffpp"  # reader for root: ffpp | dfdc | celebdf | csv | images
    options: dict = field(default_factory=dict)  # passed to the reader
    fraction: float = 1.0  # share of the dataset's original videos used
    every: int = 30  # real data: decode every Nth frame
    max_frames: int | None = 10  # real data: frames per video
    val: float = 0.15  # real data: split fractions (grouped by identity)
    test: float = 0.15
    crop_size: int = 128  # crops and MRIs are stored at this size (training resizes)
    seed: int = 0
    synthetic: DemoSceneConfig = field(default_factory=DemoSceneConfig)


@dataclass(frozen=True)
class DemoVideoConfig(Checked):
    frames: int = 48  # frames per synthetic video
    fps: float = 12.0
    crf: int = 16  # H.264 quality (lower = closer to lossless)
    max_videos: int = 4  # real data: held-out videos analysed ...
    every: int = 10  # ... every Nth frame of them (analyze.frames is for the short synthetic videos)
    max_frames: int | None = 30  # ... at most this many frames each


def _demo_gan() -> GanConfig:
    return GanConfig(
        name="gan",
        model=GanModelConfig(image_size=64, ngf=16, ndf=16),
        loss=GanLossConfig(tau=1.0),  # see configs/demo.yaml: the SSIM term blackens short runs
        data=GanDataConfig(eval_samples=32),
        train=GanTrainConfig(epochs=1000, batch_size=16, max_steps=3000, device="auto",
                          precision="auto", log_every=25, eval_every=50, checkpoint_every=50))


def _demo_analyze() -> AnalyzeConfig:
    return AnalyzeConfig(name="report", frames=AnalyzeFramesConfig(every=2),
                         faces=AnalyzeFacesConfig(max_side=None), verdict=AnalyzeVerdictConfig(rule="count", fake_fraction=0.3))


@dataclass(frozen=True)
class DemoConfig:
    name: str = field(default="demo", metadata=RUN_NAME)
    out_dir: str = "runs"
    train_minutes: float = 5.0  # GAN training time budget (stops at gan.train.max_steps too)
    calibrate_threshold: bool = True  # pick verdict.mri_threshold on validation faces
    data: DemoDataConfig = field(default_factory=DemoDataConfig)
    gan: GanConfig = field(default_factory=_demo_gan)
    video: DemoVideoConfig = field(default_factory=DemoVideoConfig)
    analyze: AnalyzeConfig = field(default_factory=_demo_analyze)

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name


def load_demo_config(path: str | None = None, overrides: list[str] | None = None) -> DemoConfig:
    """``DemoConfig()`` <- YAML (default ``configs/demo.yaml`` when present) <- ``--set``.

    Merged as dictionaries over the demo's own defaults, so ``--set gan.train.max_steps=10``
    changes one field and keeps the demo's 64 px GAN (the generic loader would rebuild the
    ``gan`` section from ``GanConfig``'s paper defaults).
    """
    if path is None and resolve_config_path(DEFAULT_CONFIG).is_file():
        path = str(resolve_config_path(DEFAULT_CONFIG))
    data = to_dict(DemoConfig())
    if path:
        data = deep_merge(data, read_yaml(path))
    data = deep_merge(data, parse_overrides(overrides))
    return from_dict(DemoConfig, data, where=path or "DemoConfig")
