"""Typed configs of detector training (``DetectorConfig``) and evaluation (``EvaluateConfig``).

Loaded from YAML with :func:`mrigan.config.load_config`; every field is documented where it is
declared so ``configs/detector_*.yaml`` can stay short.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from detectors.backbones import BACKBONES
from detectors.freezing import FreezeConfig
from detectors.heads import HEADS
from mrigan.config import RUN_NAME, Checked, ConfigError, bounds
from mrigan.fingerprint import added_later, not_shaping, runtime
from mrigan.loop_config import RunFolder, StepSettings, task_field

#: ``train.optimizer`` and ``train.scheduler`` names (see detectors.train).
OPTIMIZERS = ("adam", "adamw")
SCHEDULERS = ("none", "cosine")
#: The augmentations the paper-style training uses, by name (see detectors.augment).
DEFAULT_AUGMENT = ("flip", "blur", "color_jitter", "random_resized_crop", "random_erasing", "jpeg")


@dataclass(frozen=True)
class DetectorModelConfig(Checked):
    #: a detectors.backbones name, or timm:<model>
    backbone: str = field(default="efficientnet-b0",
                          metadata=bounds(registry=BACKBONES, registry_patterns=("timm:",)))
    weights: str | None = None  # local ImageNet weights (.safetensors / .pth); None = scratch
    head: str = field(default="paper", metadata=bounds(registry=HEADS))  # paper | linear (frame mode)
    dropout: float = 0.5
    temporal: bool = False  # True: bidirectional LSTM over clips of a face track
    clip_length: int = 8  # frames per clip in temporal mode
    lstm_hidden: int = 128


@dataclass(frozen=True)
class DetectorInputConfig(Checked):
    """What the detector looks at: ``plain`` face crops or their ``mri`` maps.

    MRIs come, in this order of preference, from ``mri_cache`` (PNG files written by a batch
    pass of ``generator`` over the faces; missing files are filled in first), from
    ``generator`` on the fly, or - as an explicitly requested upper bound only - from the
    manifest's ground-truth MRIs (``manifest_mri: true``; those are black for every real
    face, so a detector trained on them learns the label, not the artefacts).
    """

    name: str = "plain"  # plain | mri
    generator: str | None = None  # MRIGenerator weights (mrigan export-generator output)
    mri_cache: str | None = None  # folder of precomputed MRIs, mirroring the image paths
    manifest_mri: bool = False
    generator_batch: int = 32


@dataclass(frozen=True)
class DetectorDataConfig(Checked):
    root: str = ""  # MRI-DF root (manifest.csv + PNGs)
    image_size: int = 224
    train_split: str = "train"
    val_split: str = "val"
    regroup: bool = False  # recompute train/val/test grouped by identity+video (seeded)
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    split_seed: int = 0
    max_faces_per_video: int | None = None  # evenly spaced subset per video (None = all)
    # which fakes of the training split are trained on (reals: all of them): ``all``;
    # ``real`` manipulations only (the builder's self-blends left out); ``self_blend`` only -
    # the SBI recipe, real faces against their own self-blends, no real deepfake seen. The
    # validation split is not filtered (model selection on real manipulations of validation
    # identities). Departure from SBI (Shiohara & Yamasaki 2022): blends are made offline by the
    # builder (``self_blend.per_real`` per real face), not anew at every step.
    train_fakes: str = field(default="all", metadata={
        **bounds(choices=("all", "real", "self_blend")), **added_later("all")})
    workers: int = field(default=2, metadata=runtime())


@dataclass(frozen=True)
class AugmentParams(Checked):
    """The tunable parameters of the named augmentations (``train.augment_params``).

    ``jpeg``: a quality drawn uniformly from ``jpeg_quality`` (inclusive, 1-100), applied with
    probability ``jpeg_p``. Default (60, 100) with p = 0.3: mild re-encoding as on upload. The
    Xception/LSTM study's "JPEG Quality Augmentation" is (10, 50); it does not state a
    probability, and torchvision's ``JPEG`` transform it names compresses every image, so its
    preset (``configs/detector_xception_jpeg_study.yaml``) uses p = 1.
    """

    jpeg_quality: tuple[int, int] = (60, 100)
    jpeg_p: float = field(default=0.3, metadata=bounds(minimum=0.0, maximum=1.0))

    def __post_init__(self) -> None:
        super().__post_init__()
        q = self.jpeg_quality
        if (not isinstance(q, (tuple, list)) or len(q) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in q)
                or not 1 <= q[0] <= q[1] <= 100):
            raise ConfigError(f"train.augment_params.jpeg_quality={list(q)!r}: expected "
                              "[low, high] integers with 1 <= low <= high <= 100")


@dataclass(frozen=True)
class DetectorTrainConfig(StepSettings):
    """The detector's ``train:`` section: the shared loop settings (:mod:`mrigan.loop_config`:
    epochs, batch_size - the global batch, seed, device, precision, max_minutes, resume,
    max_steps, checkpoint_every, log_every) with the detector's recipe defaults, and its own."""

    epochs: int = task_field(StepSettings, "epochs", 20)
    batch_size: int = task_field(StepSettings, "batch_size", 32)
    log_every: int = task_field(StepSettings, "log_every", 10)
    checkpoint_every: int | None = task_field(StepSettings, "checkpoint_every", None)
    lr: float = 1e-4
    weight_decay: float = 0.0
    # adam (the paper's) | adamw (decoupled weight decay)
    optimizer: str = field(default="adam", metadata=bounds(choices=OPTIMIZERS))
    # learning rate over the run: none (constant, the paper's) | cosine (per step from lr down
    # to 0 at the end of train.epochs; max_steps stops early on the same curve)
    scheduler: str = field(default="none", metadata=bounds(choices=SCHEDULERS))
    loss: str = "bce"  # bce | focal
    label_smoothing: float = 0.1
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    balance: str = "weight"  # none | weight (loss weights) | sample (balanced epochs) | paired
    augment: tuple[str, ...] = DEFAULT_AUGMENT
    augment_params: AugmentParams = field(default_factory=AugmentParams)
    # channels_last memory format of the model and its 4-D inputs: auto (on for CUDA, not yet
    # measured against off: bench/detect.py --device cuda times both) | true | false
    channels_last: str | bool = field(default="auto",
                                      metadata=bounds(choices=("auto", True, False)))
    # validate every N epochs (0 as 1), after the last and at a max_steps stop (not at a
    # max_minutes one: resume then equals an uninterrupted run)
    val_every: int = field(default=1, metadata=bounds(minimum=0))
    # before each validation, recompute BatchNorm running statistics as the plain average over
    # this many training batches with the current weights ("precise BN", detectors.precise_bn);
    # 0: off (the running averages of training are used, as in the paper's code)
    bn_recalibrate: int = field(default=0, metadata=bounds(minimum=0))
    # backbone freezing / gradual unfreezing by epoch (detectors.freezing; default: none)
    freeze: FreezeConfig = field(default_factory=FreezeConfig)


@dataclass(frozen=True)
class DetectorConfig(RunFolder):
    """One detector training run: outputs in ``<out_dir>/<name>/``
    (:class:`mrigan.loop_config.RunFolder`)."""

    name: str = task_field(RunFolder, "name", "detector_plain")
    model: DetectorModelConfig = field(default_factory=DetectorModelConfig)
    input: DetectorInputConfig = field(default_factory=DetectorInputConfig)
    data: DetectorDataConfig = field(default_factory=DetectorDataConfig)
    train: DetectorTrainConfig = field(default_factory=DetectorTrainConfig)


# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalFaceSetConfig(Checked):
    """A set of faces to score: a split of an MRI-DF root, optionally restricted.

    ``methods`` keeps only fakes of those manipulation methods (reals are all kept), which
    gives method-disjoint test sets; ``sources`` keeps rows of those datasets.
    """

    name: str = "test"
    root: str = ""  # empty: the training config's data.root
    split: str = "test"
    methods: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class AggregationConfig(Checked):
    """How face scores become a video verdict (detectors.aggregate)."""

    rule: str = "count"  # count (paper) | mean | confident (DFDC winner)
    search: bool = True  # grid-search the rule's parameters on the validation set
    objective: str = "balanced_accuracy"  # any binary_report key to maximise on validation
    thresholds: tuple[float, ...] = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
    fractions: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
    # also search thresholds at this many quantiles of the validation face scores (0: only the
    # fixed grid above, the paper's). Departure from the paper's 0.5-0.95 grid: a detector whose
    # face scores all lie below 0.5 would otherwise score every video 0 (AUC exactly 0.5).
    quantile_thresholds: int = field(default=9, metadata=bounds(minimum=0))
    frame_threshold: float = 0.8  # fixed values when search is false (paper plain: 0.8/0.3)
    fake_fraction: float = 0.3


@dataclass(frozen=True)
class EvaluateConfig(Checked):
    name: str = field(default="evaluate", metadata=RUN_NAME)
    checkpoint: str = ""  # a train-detector checkpoint (best.pt)
    #: empty: <checkpoint run>/reports/<name>
    out_dir: str = field(default="", metadata=not_shaping())
    validation: EvalFaceSetConfig = field(
        default_factory=lambda: EvalFaceSetConfig(name="validation", split="val"))
    test_sets: tuple[EvalFaceSetConfig, ...] = (EvalFaceSetConfig(),)
    aggregation: AggregationConfig = field(default_factory=AggregationConfig)
    frame_threshold: float = 0.5  # face-level decision threshold for the frame table
    bootstrap: int = 1000  # resamples for the 95% intervals (0 = none)
    batch_size: int = 64
    device: str = "auto"
    precision: str = "auto"
    input: DetectorInputConfig | None = None  # override the checkpoint's input (e.g. a new cache dir)
    data_root: str = ""  # override the checkpoint's data.root
