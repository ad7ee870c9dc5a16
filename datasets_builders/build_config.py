"""The MRI-DF builder's settings (YAML ``configs/build_*.yaml``), validated when loaded.

Every value is checked in ``__post_init__``, so a bad config stops before any work with a
``ConfigError`` naming the key (``--size 3`` -> ``faces.size``, ``--max-frames -1`` ->
``max_frames``, ``faces.margin=-1`` -> ``faces.margin``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from datasets_builders.distractions import DistractionStyle
from datasets_builders.faces import BETWEEN, FaceDetectionConfig
from mrigan.config import ConfigError
from mrigan.errors import MriganError


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
    fraction: float = 1.0  # share of its units (original videos) used; paper: 0.5 of DFDC
    detect_faces: bool = True  # False for folders of images that already are face crops
    include_reals: bool = True  # write (real crop, black MRI) rows for the originals
    # augment/distract this source's units (with ``augment:``); the paper did not augment its
    # real-face datasets (Celeb-DF-v2, FDF, FFHQ), only DFDC
    augment: bool = True
    options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0.0 <= self.fraction <= 1.0:
            raise ConfigError(f"sources[{self.label}].fraction must be in [0, 1], got {self.fraction}")
        if not self.root:
            raise ConfigError(f"sources[{self.label}].root is empty: name the dataset folder or CSV")

    @property
    def label(self) -> str:
        return self.name or self.kind


@dataclass(frozen=True)
class BuildAugmentConfig:
    augment_fraction: float = 0.0  # share of units given one augmentation
    distraction_fraction: float = 0.0  # share of units given a distraction
    augmentations: tuple[str, ...] = ()  # restrict to these names (default: all)
    # what a distraction looks like: today's by default; the paper's is
    # ``distractions.PAPER_DISTRACTIONS`` (configs/build_mri_df_paper.yaml spells it out)
    distraction: DistractionStyle = field(default_factory=DistractionStyle)

    def __post_init__(self) -> None:
        for key in ("augment_fraction", "distraction_fraction"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ConfigError(f"augment.{key} must be in [0, 1], got {getattr(self, key)}")


@dataclass(frozen=True)
class BuildSplitConfig:
    val: float = 0.1
    test: float = 0.1

    def __post_init__(self) -> None:
        if self.val < 0 or self.test < 0 or self.val + self.test >= 1:
            raise ConfigError(f"split.val={self.val} and split.test={self.test} must be >= 0 "
                              "and sum to less than 1")


@dataclass(frozen=True)
class BuildConfig:
    out: str = "runs/mri_df"
    sources: tuple[BuildSourceConfig, ...] = ()
    every: int = 10  # decode every Nth frame
    max_frames: int | None = None  # per video, after ``every``
    seed: int = 0
    shard: str = "1/1"  # k/n: build the k-th of n deterministic parts
    progress: bool = True
    faces: FaceDetectionConfig = field(default_factory=FaceDetectionConfig)
    augment: BuildAugmentConfig = field(default_factory=BuildAugmentConfig)
    split: BuildSplitConfig = field(default_factory=BuildSplitConfig)
    # MTCNN on the whole frame on every k-th sampled frame only (departs from the paper, which
    # detects on every sampled frame, when > 1). The frames in between: ``detect_between``
    # "follow" looks for each face again in a small crop around its last detected box
    # (``face_follow``; on FF++ at every 10, k=3: mean IoU 0.92, worst 0.86 with per-frame MTCNN,
    # tests/datasets_builders/test_datasets_build_speed.py) at about a sixth of the cost;
    # "hold" keeps the last boxes (mean 0.87 but 0.46 in the worst frame: moving heads drift).
    # Default k=3 with follow: the FF++ sample's build at 0.60 of decode-only per CPU-second vs
    # 0.44 with MTCNN on every sampled frame (bench/build_mri_df.py, 1 torch thread, loaded)
    detect_every: int = 3
    detect_between: str = "follow"
    # units (an original and its fakes) built in this many processes at once (one torch thread
    # each); results are recorded in unit order by this process, so the output is the same
    # whatever the count
    workers: int = 1

    def __post_init__(self) -> None:
        if self.detect_every < 1:
            raise ConfigError(f"detect_every must be >= 1, got {self.detect_every}")
        if self.detect_between not in BETWEEN:
            raise ConfigError(f"detect_between must be one of {', '.join(BETWEEN)}, got "
                              f"{self.detect_between!r}")
        if self.workers < 1:
            raise ConfigError(f"workers must be >= 1, got {self.workers}")
        if not str(self.out):
            raise ConfigError("out is empty: name the output folder")
        if self.every < 1:
            raise ConfigError(f"every must be >= 1, got {self.every}")
        if self.max_frames is not None and self.max_frames < 1:
            raise ConfigError(f"max_frames must be >= 1 (or null for all), got {self.max_frames}")
        parse_shard(self.shard)

    @property
    def shard_tag(self) -> str:
        return self.shard.replace("/", "-of-")


#: settings that do not change what is written (where, which part, how it is shown, on what
#: device): left out of the resume fingerprint
NOT_SHAPING = ("out", "shard", "progress", "workers", "faces.device", "faces.batch_size")


__all__ = [
    "NOT_SHAPING",
    "BuildAugmentConfig",
    "BuildConfig",
    "BuildError",
    "BuildSourceConfig",
    "BuildSplitConfig",
    "FaceDetectionConfig",
    "parse_shard",
]
