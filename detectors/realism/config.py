"""Typed config of a realism experiment (``configs/realism*.yaml``), one section per job.

Every section derives from :class:`mrigan.config.Checked`: its ranges (``bounds`` metadata,
else the :data:`mrigan.config.NAMED_BOUNDS` of ``image_size``, ``seed``, ...) are checked from
YAML and when built directly. The ``train:`` section shares the run settings of every
training task (:class:`mrigan.loop_config.RunSettings`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from detectors.realism.model import RealismModelConfig
from detectors.realism.sampler import SequenceSampler
from mrigan.config import Checked, bounds
from mrigan.fingerprint import runtime
from mrigan.loop_config import RunFolder, RunSettings, task_field


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


#: ``train.select_by`` values: the validation figure that picks ``best.pt`` (lower is better
#: for rmse and mae, :func:`mrigan.loop.higher_is_better`)
SELECT_BY = ("score", "srcc", "plcc", "rmse", "mae")
#: ``train.scheduler`` values
SCHEDULERS = ("cosine", "plateau", "none")


@dataclass(frozen=True)
class RealismTrainConfig(RunSettings):
    """The realism (and DA-CLIP) ``train:`` section: the shared run settings
    (:mod:`mrigan.loop_config`: epochs, batch_size - per micro-batch of ``accumulation``,
    seed, device, precision, max_minutes - checked after each epoch, resume) with realism's
    recipe defaults, and its own. Realism trains whole epochs (``last.pt`` after each), so it
    has no step limit or step cadence."""

    epochs: int = task_field(RunSettings, "epochs", 30)
    batch_size: int = task_field(RunSettings, "batch_size", 8)
    # 0 trains nothing: the weights stay as initialised (an untrained baseline; the tests'
    # run whose validation never improves). Departs from the other tasks' lr > 0 on purpose.
    lr: float = field(default=1e-3, metadata=bounds(minimum=0.0))
    weight_decay: float = 1e-4
    loss: str = "rmse + 0.5*norm_in_norm"  # names of detectors.realism.losses, summed
    num_workers: int = field(default=0, metadata=runtime())
    grad_clip: float = field(default=5.0, metadata=bounds(minimum=0.0))  # 0: no clipping
    # sequences per video when validating each epoch (test uses sampler's)
    val_draws: int = field(default=3, metadata=bounds(minimum=1))
    # validation metric that picks best.pt: score | srcc | plcc | rmse | mae
    select_by: str = field(default="score", metadata=bounds(choices=SELECT_BY))
    #: torch CPU threads (0 = torch's default)
    threads: int = field(default=0, metadata={**bounds(minimum=0), **runtime()})
    tensorboard: bool = field(default=True, metadata=runtime())
    # optimisation recipe (configs/realism_ensemble_paper.yaml sets the ensemble paper's):
    # cosine (over train.epochs) | plateau (on select_by) | none
    scheduler: str = field(default="cosine", metadata=bounds(choices=SCHEDULERS))
    # with scheduler=plateau: lr *= factor after a plateau
    plateau_factor: float = field(default=0.1, metadata=bounds(exclusive_minimum=0.0,
                                                                exclusive_maximum=1.0))
    # with scheduler=plateau: epochs without improvement tolerated
    plateau_patience: int = field(default=2, metadata=bounds(minimum=0))
    # stop after this many epochs without a better select_by (0: off)
    early_stopping: int = field(default=0, metadata=bounds(minimum=0))
    # micro-batches of batch_size per optimizer step
    accumulation: int = field(default=1, metadata=bounds(minimum=1))
    retrain_on_train_val: bool = False  # after selection, train the best model on train+val
    # epochs of that retraining (0: best epoch + 1)
    retrain_epochs: int = field(default=0, metadata=bounds(minimum=0))


@dataclass(frozen=True)
class RealismBaselineConfig(Checked):
    regressor: str = "ridge"  # ridge | svr | linear | none
    alpha: float = field(default=1.0, metadata=bounds(minimum=0.0))  # ridge strength
    c: float = field(default=1.0, metadata=bounds(exclusive_minimum=0.0))  # SVR C
    # sequences per video whose pooled features are averaged
    draws: int = field(default=3, metadata=bounds(minimum=1))


@dataclass(frozen=True)
class RealismEnsembleConfig(Checked):
    checkpoints: tuple[str, ...] = ()  # other models' best.pt whose predictions are averaged in
    weights: tuple[float, ...] = ()  # one per model, this run's model first (e.g. 0.75, 0.25)


@dataclass(frozen=True)
class DaClipConfig(Checked):
    """Settings of ``model.name: da-clip`` (DREAM section IV); ignored by the regressor."""

    descriptions: str = ""  # CSV video,description: sentences of the rated (training) videos
    lambda_sim: float = field(default=0.2, metadata=bounds(minimum=0.0))  # Eq. 7's lambda
    # sentences per video and step; 0: all
    max_sentences: int = field(default=0, metadata=bounds(minimum=0))
    # retrieved training videos (DREAM: 11)
    top_k: int = field(default=3, metadata=bounds(minimum=1))


@dataclass(frozen=True)
class RealismConfig(RunFolder):
    """One realism (or DA-CLIP) experiment: outputs in ``<out_dir>/<name>/``
    (:class:`mrigan.loop_config.RunFolder`)."""

    name: str = task_field(RunFolder, "name", "realism")
    data: RealismDataConfig = field(default_factory=RealismDataConfig)
    sampler: SequenceSampler = field(default_factory=SequenceSampler)
    model: RealismModelConfig = field(default_factory=RealismModelConfig)
    train: RealismTrainConfig = field(default_factory=RealismTrainConfig)
    baseline: RealismBaselineConfig = field(default_factory=RealismBaselineConfig)
    ensemble: RealismEnsembleConfig = field(default_factory=RealismEnsembleConfig)
    da_clip: DaClipConfig = field(default_factory=DaClipConfig)
