"""``BenchmarkConfig``: every setting of ``mrigan benchmark``, typed, from YAML presets.

Presets: ``configs/benchmark_paper.yaml`` (the MRI-GAN paper's settings, for a GPU) and
``configs/benchmark_cpu.yaml`` (``base: benchmark_paper.yaml``, shrunk to finish in about 20
minutes on 2 CPU cores). Each stage's settings are the config sections it reads; they form the
stage's fingerprint (:mod:`mrigan.app.benchmark.stages`).

Ranges are ``bounds`` field metadata (:mod:`mrigan.config`), checked whether a section comes
from YAML or is built directly (:class:`mrigan.config.Checked`).

The ``gan`` section is a ``GanConfig`` and ``detector`` a :class:`DetectorPair` of two
``DetectorConfig``: the whole tree is built and checked when the benchmark config is loaded,
so an unknown key or component name anywhere (``--set detector.set.model.backbone=nope``) is
one :class:`~mrigan.config.ConfigError` before any stage runs or any folder is made. Each
starts from a YAML file it names as ``config``; the older form of these sections
(``config:`` + ``set:``, ``plain_config`` / ``mri_config``) is rewritten where it was written
(:func:`upgrade_sections`). The stages' settings, hence fingerprints, are those of the same
resolved configs as before, so earlier run folders resume.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from datasets_builders.build_config import BuildSourceConfig, FrameSampling
from datasets_builders.faces import FaceCrop
from detectors.config import DetectorConfig
from mrigan import fingerprint as settings_fp
from mrigan import perceptual
from mrigan.config import (
    RUN_NAME,
    Checked,
    ConfigError,
    bounds,
    deep_merge,
    from_dict,
    key_where,
    read_yaml,
    to_dict,
)
from mrigan.fingerprint import added_later
from mrigan.gan_config import GanConfig

T = TypeVar("T")


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
class DataSettings(FrameSampling, FaceCrop):
    """Frame sampling and face crops of the MRI-DF and face-set builds: the builders' own
    sections (``every``, ``max_frames``: :class:`FrameSampling`, paper: every 10th frame;
    ``size``, ``max_side``: :class:`FaceCrop`, paper: 256 px crops), flat keys as in their
    YAML, and the benchmark's own keys below."""

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


#: the config files the ``gan`` and ``detector`` sections start from when they name none
GAN_FILE = "configs/mri_gan.yaml"
PLAIN_FILE = "configs/detector_plain.yaml"
MRI_FILE = "configs/detector_mri.yaml"

#: what the plain and the MRI detector may set apart (dotted keys and their sub-keys): their
#: input, their augmentations (colour jitter and JPEG are for faces, not MRIs), and what each
#: stage sets itself (name, out_dir, data.root); everything else is one setting of both
PER_DETECTOR = ("name", "out_dir", "input", "data.root", "train.augment", "train.augment_params")


def _mapping(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {value!r}")
    return dict(value)


def _section(cls: type[T], value: Any, where: str, default_file: str) -> T:
    """A ``gan`` / ``detector.plain`` / ``detector.mri`` section as ``cls``: its keys over the
    YAML file it names as ``config`` (default ``default_file``; its ``base:`` chain resolved),
    checked as one config (``where`` names the section in errors). Built ones pass."""
    if isinstance(value, cls):
        return value
    data = _mapping(value, where)
    file = data.pop("config", default_file)
    if not isinstance(file, str) or not file.strip():
        raise ConfigError(f"{key_where(where, 'config')}: expected a config file name, "
                          f"got {file!r}")
    return from_dict(cls, deep_merge(read_yaml(file), data), where=where)


def upgrade_sections(data: Mapping) -> dict:
    """One layer of a benchmark config (a preset file of a ``base:`` chain, the ``--set``
    overrides) with its ``gan`` and ``detector`` sections in the typed form; an older form
    is rewritten where it was written, so a later layer still overrides an earlier one in any
    form:

    * ``gan.set`` (nested ``GanConfig`` keys) -> merged into ``gan`` itself;
    * ``detector.plain_config`` / ``mri_config`` -> ``detector.plain.config`` / ``mri.config``;
    * ``detector.set`` (keys of BOTH detectors) -> merged into ``detector.plain`` and
      ``detector.mri`` (a key given to one detector in the same layer wins for it).

    Values of the wrong kind are left for :meth:`BenchmarkConfig.resolve_mapping` to refuse."""
    out = dict(data)
    gan = out.get("gan")
    if isinstance(gan, Mapping) and "set" in gan and isinstance(gan["set"], (Mapping, type(None))):
        gan = dict(gan)
        out["gan"] = deep_merge(gan, gan.pop("set") or {})
    det = out.get("detector")
    if isinstance(det, Mapping):
        det = dict(det)
        for kind in ("plain", "mri"):
            if f"{kind}_config" in det and isinstance(det.get(kind), (Mapping, type(None))):
                det[kind] = deep_merge({"config": det.pop(f"{kind}_config")}, det.get(kind) or {})
        if (isinstance(det.get("set"), (Mapping, type(None)))
                and all(isinstance(det.get(k), (Mapping, type(None))) for k in ("plain", "mri"))):
            both = det.pop("set", None) or {}
            if both:
                for kind in ("plain", "mri"):
                    det[kind] = deep_merge(both, det.get(kind) or {})
        out["detector"] = det
    return out


@dataclass(frozen=True)
class DetectorPair:
    """The plain and the MRI detector: one backbone, one budget (the paper's comparison).

    Each is a ``DetectorConfig``: from YAML, the keys of ``plain`` / ``mri`` over the file it
    names as ``config`` (default :data:`PLAIN_FILE` / :data:`MRI_FILE`: each input's own
    defaults); ``set`` gives keys of both (:func:`upgrade_sections`). Checked when built: the
    two may differ only in :data:`PER_DETECTOR`, so backbone, weights, size and budget cannot."""

    plain: DetectorConfig = field(
        default_factory=lambda: _section(DetectorConfig, None, "detector.plain", PLAIN_FILE))
    mri: DetectorConfig = field(
        default_factory=lambda: _section(DetectorConfig, None, "detector.mri", MRI_FILE))

    def __post_init__(self) -> None:
        a, b = settings_fp.flat(to_dict(self.plain)), settings_fp.flat(to_dict(self.mri))
        for key in sorted(set(a) | set(b)):
            own = any(key == k or key.startswith(k + ".") for k in PER_DETECTOR)
            if not own and a.get(key) != b.get(key):
                raise ConfigError(
                    f"{key} is {a.get(key)!r} for the plain detector but {b.get(key)!r} for the "
                    "MRI one: both share everything but their input and augmentations (give it "
                    "once, in detector.set)")

    @classmethod
    def resolve_mapping(cls, data: Mapping, where: str) -> dict:
        data = upgrade_sections({"detector": data})["detector"]
        if "set" in data:  # left by upgrade_sections: not a mapping, or a section that is not
            _mapping(data["set"], key_where(where, "set"))
            raise ConfigError(f"{key_where(where, 'set')}: needs detector.plain and "
                              "detector.mri to be mappings")
        unknown = sorted(set(data) - {"plain", "mri"})
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown} for the detector section; "
                              "known: ['plain', 'mri', 'set', 'plain_config', 'mri_config']")
        return {kind: _section(DetectorConfig, data.get(kind), key_where(where, kind), file)
                for kind, file in (("plain", PLAIN_FILE), ("mri", MRI_FILE))}


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
    #: the MRI-GAN: a ``GanConfig``, from YAML its keys over the file it names as ``config``
    #: (default :data:`GAN_FILE`); the GAN stage sets its output folder and data root, and
    #: ``data.mri_metric`` (the ``data`` section's) and, unless auto, ``device``
    gan: GanConfig = field(default_factory=lambda: _section(GanConfig, None, "gan", GAN_FILE))
    detector: DetectorPair = field(default_factory=DetectorPair)
    evaluate: EvalSettings = field(default_factory=EvalSettings)
    #: grouped k-fold over the pairs' identity groups (``mrigan benchmark --folds K``,
    #: :mod:`mrigan.app.benchmark.folds`); 0: the single split
    folds: int = 0
    #: the trained detectors: ``plain`` and ``mri`` (the MRI detector needs the MRI-GAN; without
    #: it no GAN is trained - the k-fold's plain-recipe comparisons)
    detectors: tuple[str, ...] = ("plain", "mri")

    def __post_init__(self) -> None:
        if (self.detector.plain.data.train_fakes == "self_blend"
                and not self.data.self_blend_per_real):
            raise ConfigError("detector data.train_fakes=self_blend trains on self-blends only, "
                              "but data.self_blend_per_real is 0 (no self-blend is built)")

    upgrade_mapping = staticmethod(upgrade_sections)

    @classmethod
    def resolve_mapping(cls, data: Mapping, where: str) -> dict:
        """``gan`` built from its file and keys (``detector``: :class:`DetectorPair`)."""
        data = upgrade_sections(data)
        if isinstance(data.get("gan"), Mapping) and "set" in data["gan"]:
            _mapping(data["gan"]["set"], key_where(where, "gan.set"))  # left: not a mapping
        if "gan" in data:
            data["gan"] = _section(GanConfig, data["gan"], key_where(where, "gan"), GAN_FILE)
        return data


__all__ = ["GAN_FILE", "MRI_FILE", "PER_DETECTOR", "PLAIN_FILE", "BenchmarkConfig", "DataSettings",
           "DetectorPair", "EvalSettings", "SplitSettings", "upgrade_sections"]
