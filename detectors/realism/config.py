"""Typed config of a realism experiment (``configs/realism*.yaml``), one section per job.

The data section derives from :class:`mrigan.config.Checked`: its ranges (the
:data:`mrigan.config.NAMED_BOUNDS` of ``image_size``, ``seed``) are checked from YAML and when
built directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from detectors.realism.model import RealismModelConfig
from detectors.realism.sampler import SequenceSampler
from mrigan.config import RUN_NAME, Checked
from mrigan.fingerprint import not_shaping, runtime


@dataclass(frozen=True)
class RealismDataConfig(Checked):
    labels: tuple[str, ...] = ()  # MOS label files (DREAM, DFGC-2022 or file,mos,identity,method)
    label_format: str = "auto"  # auto | dream | dfgc | table
    clips: str = ""  # folder of per-video face crops: <key without extension>/*.png (+ mri/)
    manifest: str = ""  # or an MRI-DF dataset root: labels joined to its face tracks
    videos: str = ""  # rated videos (<videos>/<label key>): faces extracted once into data.clips
    video_every: int = 5  # with data.videos: decode every Nth frame
    video_max_frames: int = 60  # with data.videos: frames kept per video
    face_size: int = 256  # with data.videos: side of the stored face crops
    allow_missing: bool = False  # labels without frames: error (default) or skip and count
    image_size: int = 64
    split: str = "identity"  # identity | method | both | none (all videos are one test set)
    test_fraction: float = 0.3
    val_fraction: float = 0.15
    seed: int = 0
    test_identities: tuple[str, ...] = ()  # fix the held-out identities instead of drawing
    test_methods: tuple[str, ...] = ()  # fix the held-out methods instead of drawing
    mri_source: str = "precomputed"  # precomputed (files / manifest) | generator
    generator: str = ""  # MRIGenerator weights, for mri_source=generator


@dataclass(frozen=True)
class RealismTrainConfig:
    """Loader-checked only (not :class:`~mrigan.config.Checked`): tests build ``lr=0.0``
    directly (a frozen model whose validation never improves), which the named ``lr > 0`` rule
    refuses in a file."""

    epochs: int = 30
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    loss: str = "rmse + 0.5*norm_in_norm"  # names of detectors.realism.losses, summed
    device: str = "auto"
    precision: str = "auto"  # fp32 | bf16 | fp16 | auto
    num_workers: int = field(default=0, metadata=runtime())
    seed: int = 0
    grad_clip: float = 5.0
    val_draws: int = 3  # sequences per video when validating each epoch (test uses sampler's)
    select_by: str = "score"  # validation metric that picks best.pt: score | srcc | plcc | rmse
    #: torch CPU threads (0 = torch's default)
    threads: int = field(default=0, metadata=runtime())
    tensorboard: bool = field(default=True, metadata=runtime())
    # optimisation recipe (configs/realism_ensemble_paper.yaml sets the ensemble paper's)
    scheduler: str = "cosine"  # cosine (over train.epochs) | plateau (on select_by) | none
    plateau_factor: float = 0.1  # with scheduler=plateau: lr *= factor after a plateau
    plateau_patience: int = 2  # with scheduler=plateau: epochs without improvement tolerated
    early_stopping: int = 0  # stop after this many epochs without a better select_by (0: off)
    accumulation: int = 1  # micro-batches of batch_size per optimizer step
    retrain_on_train_val: bool = False  # after selection, train the best model on train+val
    retrain_epochs: int = 0  # epochs of that retraining (0: best epoch + 1)
    #: continue from <out>/checkpoints/last.pt when it exists (mrigan.loop)
    resume: bool = field(default=True, metadata=not_shaping())
    #: wall-time budget, checked after each epoch (0: none)
    max_minutes: float = field(default=0.0, metadata=runtime())


@dataclass(frozen=True)
class RealismBaselineConfig:
    regressor: str = "ridge"  # ridge | svr | linear | none
    alpha: float = 1.0  # ridge strength
    c: float = 1.0  # SVR C
    draws: int = 3  # sequences per video whose pooled features are averaged


@dataclass(frozen=True)
class RealismEnsembleConfig:
    checkpoints: tuple[str, ...] = ()  # other models' best.pt whose predictions are averaged in
    weights: tuple[float, ...] = ()  # one per model, this run's model first (e.g. 0.75, 0.25)


@dataclass(frozen=True)
class DaClipConfig:
    """Settings of ``model.name: da-clip`` (DREAM section IV); ignored by the regressor."""

    descriptions: str = ""  # CSV video,description: sentences of the rated (training) videos
    lambda_sim: float = field(default=0.2, metadata={"minimum": 0.0})  # Eq. 7's lambda
    max_sentences: int = field(default=0, metadata={"minimum": 0})  # per video and step; 0: all
    top_k: int = field(default=3, metadata={"minimum": 1})  # retrieved training videos (DREAM: 11)


@dataclass(frozen=True)
class RealismConfig:
    name: str = field(default="realism", metadata={**RUN_NAME, **not_shaping()})
    out_dir: str = field(default="runs", metadata=not_shaping())
    data: RealismDataConfig = field(default_factory=RealismDataConfig)
    sampler: SequenceSampler = field(default_factory=SequenceSampler)
    model: RealismModelConfig = field(default_factory=RealismModelConfig)
    train: RealismTrainConfig = field(default_factory=RealismTrainConfig)
    baseline: RealismBaselineConfig = field(default_factory=RealismBaselineConfig)
    ensemble: RealismEnsembleConfig = field(default_factory=RealismEnsembleConfig)
    da_clip: DaClipConfig = field(default_factory=DaClipConfig)
