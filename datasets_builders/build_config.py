"""The MRI-DF builder's settings (YAML ``configs/build_*.yaml``), validated when loaded.

Every value is checked, from YAML or when built directly, so a bad config stops before any work
with a ``ConfigError`` naming the key (``--size 3`` -> ``faces.size``, ``--max-frames -1`` ->
``max_frames``, ``faces.margin=-1`` -> ``faces.margin``): ranges and choices are ``bounds``
field metadata (:class:`mrigan.config.Checked`); ``__post_init__`` keeps the checks that are
not a range (an empty path, the shard's form, split shares that must leave room for train).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from datasets_builders.distractions import DistractionStyle
from datasets_builders.faces import BETWEEN, FaceDetectionConfig
from mrigan import perceptual
from mrigan.config import Checked, ConfigError, bounds, check_bounds
from mrigan.errors import MriganError
from mrigan.fingerprint import added_later, moot_when, not_shaping, runtime


class BuildError(MriganError, RuntimeError):
    """A build that cannot start or finish (bad config, output inside an input, pending shards,
    changed settings on resume, a second writer)."""


def parse_shard(text: str) -> tuple[int, int]:
    try:
        k, n = (int(v) for v in str(text).split("/"))
    except ValueError:
        raise ConfigError(f"shard must look like k/n (e.g. 2/8), got {text!r}") from None
    if not 1 <= k <= n:
        raise ConfigError(f"shard {text!r}: need 1 <= k <= n")
    return k, n


@dataclass(frozen=True)
class BuildSourceConfig:
    """One dataset to read. ``options`` go to its reader (e.g. ``compression``, ``methods``
    for ``ffpp``; ``metadata`` for ``dfdc``; ``identity_from`` for ``images``)."""

    kind: str = "csv"  # ffpp | dfdc | celebdf | csv | images
    root: str = ""  # dataset folder (or the CSV file)
    name: str = ""  # the manifest's ``source`` value; default: kind
    #: share of its units (original videos) used; paper: 0.5 of DFDC
    fraction: float = field(default=1.0, metadata=bounds(minimum=0.0, maximum=1.0))
    detect_faces: bool = True  # False for folders of images that already are face crops
    include_reals: bool = True  # write (real crop, black MRI) rows for the originals
    # augment/distract this source's units (with ``augment:``); the paper did not augment its
    # real-face datasets (Celeb-DF-v2, FDF, FFHQ), only DFDC
    augment: bool = field(default=True, metadata=added_later(True))
    options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_bounds(self, f"sources[{self.label}]")
        if not self.root:
            raise ConfigError(f"sources[{self.label}].root is empty: name the dataset folder or CSV")

    @property
    def label(self) -> str:
        return self.name or self.kind


@dataclass(frozen=True)
class BuildAugmentConfig(Checked):
    #: share of units given one augmentation
    augment_fraction: float = field(default=0.0, metadata=bounds(minimum=0.0, maximum=1.0))
    #: share of units given a distraction
    distraction_fraction: float = field(default=0.0, metadata=bounds(minimum=0.0, maximum=1.0))
    augmentations: tuple[str, ...] = ()  # restrict to these names (default: all)
    # what a distraction looks like: today's by default; the paper's is
    # ``distractions.PAPER_DISTRACTIONS`` (configs/build_mri_df_paper.yaml spells it out)
    distraction: DistractionStyle = field(default_factory=DistractionStyle)


@dataclass(frozen=True)
class BuildSelfBlendConfig(Checked):
    """Self-blended fakes of the build's real faces (issue 21: make every real face count).

    For every real face of a unit in ``splits`` the builder writes ``per_real`` self-blended
    fakes (:func:`datasets_builders.synthetic.self_blend` with the SBI variety of
    :func:`~datasets_builders.synthetic.sbi_params`), each an exact (real, fake, MRI) triple
    with ``MRI = clip(1 - SSIM(real, fake))``, as rows with ``method`` ``self_blend`` (real
    manipulations keep their method), ``video`` ``<real video>~sbi<k>`` and the real face's
    identity and split. Seeded by (seed, unit, frame, track, k): the same build writes the same
    blends. Only the listed splits (default: train), so validation and test groups keep real
    manipulations alone."""

    per_real: int = field(default=0, metadata={**bounds(minimum=0, maximum=16), **added_later(0)})
    splits: tuple[str, ...] = field(default=("train",), metadata=moot_when("per_real", 0))

    def __post_init__(self) -> None:
        super().__post_init__()
        unknown = [s for s in self.splits if s not in ("train", "val", "test")]
        if unknown:
            raise ConfigError(f"self_blend.splits: unknown split(s) {unknown}; use train, val, "
                              "test")


@dataclass(frozen=True)
class BuildSplitConfig(Checked):
    val: float = field(default=0.1, metadata=bounds(minimum=0.0))
    test: float = field(default=0.1, metadata=bounds(minimum=0.0))

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.val + self.test >= 1:
            raise ConfigError(f"split.val={self.val} and split.test={self.test} must sum to "
                              "less than 1 (the rest is train)")


@dataclass(frozen=True)
class FrameSampling(Checked):
    """Which frames of a video are read: the one definition the MRI-DF builder, the face-set
    builder and the benchmark's ``data`` section share (flat keys in their YAML)."""

    every: int = 10  # decode every Nth frame (>= 1: the named rule)
    #: per video, after ``every`` (null: all)
    max_frames: int | None = field(default=None, metadata=bounds(minimum=1))


@dataclass(frozen=True)
class VideoBuildConfig(FrameSampling):
    """What both builders of face crops share (:class:`BuildConfig`, the MRI-DF;
    ``build_faces.BuildFaceSetConfig``, labelled face sets): where, from which sources, which
    frames, the seed, the shard, face detection and the identity split."""

    out: str = field(default="runs/mri_df", metadata=not_shaping())
    sources: tuple[BuildSourceConfig, ...] = ()
    seed: int = 0
    shard: str = field(default="1/1", metadata=not_shaping())  # k/n: the k-th of n parts
    progress: bool = field(default=True, metadata=runtime())
    faces: FaceDetectionConfig = field(default_factory=FaceDetectionConfig)
    split: BuildSplitConfig = field(default_factory=BuildSplitConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not str(self.out):
            raise ConfigError("out is empty: name the output folder")
        parse_shard(self.shard)

    @property
    def shard_tag(self) -> str:
        return self.shard.replace("/", "-of-")


@dataclass(frozen=True)
class BuildConfig(VideoBuildConfig):
    augment: BuildAugmentConfig = field(default_factory=BuildAugmentConfig)
    self_blend: BuildSelfBlendConfig = field(default_factory=BuildSelfBlendConfig)
    # MTCNN on the whole frame on every k-th sampled frame only (departs from the paper, which
    # detects on every sampled frame, when > 1). The frames in between: ``detect_between``
    # "follow" looks for each face again in a small crop around its last detected box
    # (``face_follow``; on FF++ at every 10, k=3: mean IoU 0.92, worst 0.86 with per-frame MTCNN,
    # tests/datasets_builders/test_datasets_build_speed.py) at about a sixth of the cost;
    # "hold" keeps the last boxes (mean 0.87 but 0.46 in the worst frame: moving heads drift).
    # Default k=3 with follow: the FF++ sample's build at 0.60 of decode-only per CPU-second vs
    # 0.44 with MTCNN on every sampled frame (bench/build_mri_df.py, 1 torch thread, loaded)
    detect_every: int = field(default=3, metadata=bounds(minimum=1))
    detect_between: str = field(default="follow", metadata={
        **bounds(choices=BETWEEN), **added_later("hold"), **moot_when("detect_every", 1)})
    # units (an original and its fakes) built in this many processes at once (one torch thread
    # each); results are recorded in unit order by this process, so the output is the same
    # whatever the count
    workers: int = field(default=1, metadata={**bounds(minimum=1), **runtime()})
    # the per-pixel perceptual metric of the MRIs (a ``mrigan.perceptual.DISSIMILARITIES``
    # name): ssim is the paper's MRI, clip(1 - SSIM); recorded in every manifest row
    mri_metric: str = field(default="ssim", metadata=added_later("ssim"))

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mri_metric not in perceptual.DISSIMILARITIES:
            raise ConfigError(f"mri_metric: unknown perceptual metric {self.mri_metric!r}; "
                              f"known: {', '.join(perceptual.DISSIMILARITIES.names())}")


__all__ = [
    "BuildAugmentConfig",
    "BuildConfig",
    "BuildError",
    "BuildSelfBlendConfig",
    "BuildSourceConfig",
    "BuildSplitConfig",
    "FaceDetectionConfig",
    "FrameSampling",
    "VideoBuildConfig",
    "parse_shard",
]
