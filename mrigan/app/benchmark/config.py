"""``BenchmarkConfig``: every setting of ``mrigan benchmark``, typed, from YAML presets.

Presets: ``configs/benchmark_paper.yaml`` (the MRI-GAN paper's settings, for a GPU) and
``configs/benchmark_cpu.yaml`` (``base: benchmark_paper.yaml``, shrunk to finish in about 20
minutes on 2 CPU cores). Each stage's settings are the config sections it reads; they form the
stage's fingerprint (:mod:`mrigan.app.benchmark.stages`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from datasets_builders.build_config import BuildSourceConfig
from mrigan.config import ConfigError


@dataclass(frozen=True)
class SplitSettings:
    """Identity-grouped split of the paired videos (``mrigan.grouping`` via the builder's
    ``assign_splits``): ``test`` identities are held out of every training stage; of the rest,
    ``val`` go to the MRI-DF's validation split (GAN/detector model selection, video-rule search)."""

    test: float = 0.25
    val: float = 0.34  # share of the non-test identities
    seed: int = 0

    def __post_init__(self) -> None:
        for key in ("test", "val"):
            if not 0.0 < getattr(self, key) < 1.0:
                raise ConfigError(f"split.{key} must be in (0, 1), got {getattr(self, key)}")


@dataclass(frozen=True)
class DataSettings:
    """Frame sampling and face crops of the MRI-DF and face-set builds."""

    every: int = 10  # paper: every 10th frame
    max_frames: int | None = None  # per video, after ``every``
    size: int = 256  # crop size (paper: 256)
    max_side: int | None = 960  # frames are shrunk to this longest side for face detection
    max_faces: int = 32  # face sets: crops kept per video
    augment_fraction: float = 0.0  # MRI-DF augmentation (the paper's; 0: none)
    # MRI-DF builds: whole-frame MTCNN on every k-th sampled frame, faces followed in between
    # (``BuildConfig.detect_every``). 1 = every sampled frame, the paper's protocol and what the
    # shipped default generator's card was made with; the builder's own default is 3 (faster).
    detect_every: int = 1

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ConfigError(f"data.every must be >= 1, got {self.every}")
        if self.max_frames is not None and self.max_frames < 1:
            raise ConfigError(f"data.max_frames must be >= 1 or null, got {self.max_frames}")
        if self.size < 16:
            raise ConfigError(f"data.size must be >= 16, got {self.size}")
        if self.detect_every < 1:
            raise ConfigError(f"data.detect_every must be >= 1, got {self.detect_every}")
        if self.max_faces < 1:
            raise ConfigError(f"data.max_faces must be >= 1, got {self.max_faces}")


@dataclass(frozen=True)
class GanSettings:
    """MRI-GAN: a ``configs/mri_gan*.yaml`` file plus overrides (nested keys of ``GanConfig``)."""

    config: str = "configs/mri_gan.yaml"
    set: dict = field(default_factory=dict)


@dataclass(frozen=True)
class DetectorSettings:
    """The plain and the MRI detector: one backbone, one budget (the paper's comparison).

    ``plain_config`` / ``mri_config`` give each input's own defaults (augmentations: colour
    jitter and JPEG are for faces, not MRIs); ``set`` (nested ``DetectorConfig`` keys) then
    applies to BOTH, so backbone, weights, size and budget cannot differ between them."""

    plain_config: str = "configs/detector_plain.yaml"
    mri_config: str = "configs/detector_mri.yaml"
    set: dict = field(default_factory=dict)


@dataclass(frozen=True)
class EvalSettings:
    rule: str = "count"  # the paper's video rule; parameters grid-searched on validation
    bootstrap: int = 1000  # resamples for the 95% intervals
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.rule not in ("count", "mean", "confident"):
            raise ConfigError(f"evaluate.rule must be count, mean or confident, got {self.rule!r}")
        if self.bootstrap < 0:
            raise ConfigError(f"evaluate.bootstrap must be >= 0, got {self.bootstrap}")


@dataclass(frozen=True)
class BenchmarkConfig:
    name: str = "benchmark"
    pairs: str = ""  # CSV path,label,original[,identity,method] (build-dataset --csv form)
    #: instead of ``pairs``: dataset layouts, as the MRI-DF builder reads them (``kind: ffpp``
    #: with ``root`` the FF++ folder, ``kind: dfdc`` with ``metadata.json`` parts, ...)
    sources: tuple[BuildSourceConfig, ...] = ()
    labelled: str = ""  # optional CSV path,label[,identity,...]: extra test videos, no originals
    device: str = "auto"  # face detection, GAN, detectors, evaluation
    split: SplitSettings = field(default_factory=SplitSettings)
    data: DataSettings = field(default_factory=DataSettings)
    gan: GanSettings = field(default_factory=GanSettings)
    detector: DetectorSettings = field(default_factory=DetectorSettings)
    evaluate: EvalSettings = field(default_factory=EvalSettings)


__all__ = ["BenchmarkConfig", "DataSettings", "DetectorSettings", "EvalSettings", "GanSettings",
           "SplitSettings"]
