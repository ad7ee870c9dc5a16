"""``BenchmarkConfig``: every setting of ``mrigan benchmark``, typed, from YAML presets.

Presets: ``configs/benchmark_paper.yaml`` (the MRI-GAN paper's settings, for a GPU) and
``configs/benchmark_cpu.yaml`` (``base: benchmark_paper.yaml``, shrunk to finish in about 20
minutes on 2 CPU cores). Each stage's settings are the config sections it reads; they form the
stage's fingerprint (:mod:`mrigan.app.benchmark.stages`).

Ranges are ``bounds`` field metadata (:mod:`mrigan.config`), checked whether a section comes
from YAML or is built directly (:class:`mrigan.config.Checked`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from datasets_builders.build_config import BuildSourceConfig
from mrigan import perceptual
from mrigan.config import RUN_NAME, Checked, ConfigError, bounds
from mrigan.fingerprint import added_later


@dataclass(frozen=True)
class SplitSettings(Checked):
    """Identity-grouped split of the paired videos (``mrigan.grouping`` via the builder's
    ``assign_splits``): ``test`` identities are held out of every training stage; of the rest,
    ``val`` go to the MRI-DF's validation split (GAN/detector model selection, video-rule search)."""

    test: float = field(default=0.25, metadata=bounds(exclusive_minimum=0.0,
                                                      exclusive_maximum=1.0))
    #: share of the non-test identities
    val: float = field(default=0.34, metadata=bounds(exclusive_minimum=0.0,
                                                     exclusive_maximum=1.0))
    seed: int = 0


@dataclass(frozen=True)
class DataSettings(Checked):
    """Frame sampling and face crops of the MRI-DF and face-set builds."""

    every: int = 10  # paper: every 10th frame
    #: per video, after ``every`` (null: all)
    max_frames: int | None = field(default=None, metadata=bounds(minimum=1))
    size: int = field(default=256, metadata=bounds(minimum=16))  # crop size (paper: 256)
    max_side: int | None = 960  # frames are shrunk to this longest side for face detection
    max_faces: int = field(default=32, metadata=bounds(minimum=1))  # face sets: crops per video
    augment_fraction: float = 0.0  # MRI-DF augmentation (the paper's; 0: none)
    # MRI-DF builds: whole-frame MTCNN on every k-th sampled frame, faces followed in between
    # (``BuildConfig.detect_every``). 1 = every sampled frame, the paper's protocol and what the
    # shipped default generator's card was made with; the builder's own default is 3 (faster).
    detect_every: int = field(default=1, metadata={**bounds(minimum=1), **added_later(1)})
    #: self-blended fakes per real face of the training split, in the MRI-DF of the training
    #: identities only (``BuildSelfBlendConfig.per_real``; never in the held-out build, never
    #: in the validation split). 0: none, the paper.
    self_blend_per_real: int = field(default=0, metadata={**bounds(minimum=0, maximum=16),
                                                          **added_later(0)})
    #: the perceptual metric of both MRI-DF builds' MRIs (``BuildConfig.mri_metric``: a
    #: ``mrigan.perceptual.DISSIMILARITIES`` name), hence of the generator trained on them
    mri_metric: str = field(default="ssim", metadata=added_later("ssim"))

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mri_metric not in perceptual.DISSIMILARITIES:
            raise ConfigError(f"data.mri_metric: unknown perceptual metric {self.mri_metric!r}; "
                              f"known: {', '.join(perceptual.DISSIMILARITIES.names())}")


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
class EvalSettings(Checked):
    #: the paper's video rule; parameters grid-searched on validation
    rule: str = field(default="count", metadata=bounds(choices=("count", "mean", "confident")))
    bootstrap: int = 1000  # resamples for the 95% intervals (>= 0: the named rule)
    batch_size: int = 64


@dataclass(frozen=True)
class BenchmarkConfig:
    name: str = field(default="benchmark", metadata=RUN_NAME)
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
    #: grouped k-fold over the pairs' identity groups (``mrigan benchmark --folds K``,
    #: :mod:`mrigan.app.benchmark.folds`); 0: the single split
    folds: int = 0
    #: the trained detectors: ``plain`` and ``mri`` (the MRI detector needs the MRI-GAN; without
    #: it no GAN is trained - the k-fold's plain-recipe comparisons)
    detectors: tuple[str, ...] = ("plain", "mri")


__all__ = ["BenchmarkConfig", "DataSettings", "DetectorSettings", "EvalSettings", "GanSettings",
           "SplitSettings"]
