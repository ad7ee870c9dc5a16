"""The analyst pipeline's configuration (``AnalyzeConfig``) and its up-front validation.

``validate_config`` runs before any model is loaded or any input is read, so a bad value
(``verdict.rule=bogus``, ``frames.every=0``) fails at once with a :class:`ConfigError` naming the
key, instead of after every input has been analysed.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, field

from datasets_builders.faces import RECALL_SECOND_PASS_BELOW, FaceDetectionConfig
from detectors import aggregate
from detectors.lime_explain import LimeConfig
from mrigan.config import ConfigError


@dataclass(frozen=True)
class AnalyzeFramesConfig:
    every: int = 10  # analyse frames 0, every, 2*every, ...
    max_frames: int | None = None  # per video, after sampling (None = all)


@dataclass(frozen=True)
class AnalyzeFacesConfig(FaceDetectionConfig):
    """Face detection of the analysis: ``datasets_builders.faces.FaceDetectionConfig`` (the one
    set of detection defaults: thresholds, min_face_size, max_side, batch_size, margin,
    iou_threshold, ...) with the permissive second pass ON (issue 11: recall matters more than
    precision when analysing a suspect video) and two analysis-only fields. ``size`` is replaced
    by the generator's input size and ``device`` "auto" by the analysis' device."""

    second_pass_below: float = RECALL_SECOND_PASS_BELOW
    max_faces_per_frame: int | None = None  # keep the best-scoring N faces of a frame


@dataclass(frozen=True)
class AnalyzeVerdictConfig:
    """How face scores become one verdict per input (rules from ``detectors.aggregate``)."""

    rule: str = "count"
    detector_threshold: float = 0.7  # face threshold on P(fake) (paper, MRI method: 0.7)
    # face threshold on the mean MRI when there is no detector; null: the generator's model
    # card's (chosen on validation videos), else 0.08 (mrigan.model_card.DEFAULT_MRI_THRESHOLD)
    mri_threshold: float | None = None
    # "count": fake when more than this share of faces is above; null: the card's (without a
    # detector), else 0.3
    fake_fraction: float | None = None


@dataclass(frozen=True)
class AnalyzeReportConfig:
    worst_k: int = 6  # most suspicious faces shown per input
    heat_vmax: float = 0.5  # MRI value drawn at full colour (fixed scale)
    thumbnail_side: int = 480  # longest side of the frame pictures in the report
    # warn next to the verdict when faces were found in fewer than this share of the sampled
    # frames (after the second detection pass): the verdict then rests on few frames
    low_coverage: float = 0.5
    # with a frame detector, what explains its score over each face: gradcam (detectors.explain)
    # | lime (detectors.lime_explain, optional extra mrigan[lime]; lime.n_samples forward
    # passes per face, so it runs only on the worst_k faces the report shows) | none
    explain: str = "gradcam"
    lime: LimeConfig = field(default_factory=LimeConfig)  # settings for explain=lime (seeded)


@dataclass(frozen=True)
class AnalyzeConfig:
    name: str = "analyze"
    device: str = "auto"
    precision: str = "auto"  # fp32 | bf16 | fp16 | auto (bf16/fp16 on CUDA, fp32 on CPU)
    batch_size: int = 32  # faces per generator / detector batch
    frames: AnalyzeFramesConfig = field(default_factory=AnalyzeFramesConfig)
    faces: AnalyzeFacesConfig = field(default_factory=AnalyzeFacesConfig)
    verdict: AnalyzeVerdictConfig = field(default_factory=AnalyzeVerdictConfig)
    report: AnalyzeReportConfig = field(default_factory=AnalyzeReportConfig)


PRECISIONS = ("auto", "fp32", "bf16", "fp16")
EXPLAINERS = ("gradcam", "lime", "none")


def _check(ok: bool, key: str, value: object, need: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r}: expected {need}")


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def validate_config(cfg: AnalyzeConfig) -> AnalyzeConfig:
    """Check every value that would otherwise fail (or silently mislead) mid-run; returns ``cfg``.

    Raises :class:`mrigan.config.ConfigError` naming the first bad key.
    """
    rules = aggregate.RULES.names()
    _check(cfg.verdict.rule in rules, "verdict.rule", cfg.verdict.rule,
           f"one of {', '.join(rules)}")
    _check(cfg.precision in PRECISIONS, "precision", cfg.precision, f"one of {', '.join(PRECISIONS)}")
    _check(cfg.batch_size >= 1, "batch_size", cfg.batch_size, "an integer >= 1")
    _check(cfg.frames.every >= 1, "frames.every", cfg.frames.every, "an integer >= 1")
    _check(cfg.frames.max_frames is None or cfg.frames.max_frames >= 1, "frames.max_frames",
           cfg.frames.max_frames, "an integer >= 1 or null (all frames)")
    fc = cfg.faces
    _check(len(fc.thresholds) == 3 and all(_finite(t) and 0 <= t <= 1 for t in fc.thresholds),
           "faces.thresholds", fc.thresholds, "three numbers in [0, 1]")
    _check(fc.min_face_size >= 1, "faces.min_face_size", fc.min_face_size, "an integer >= 1")
    _check(fc.max_side is None or fc.max_side >= 16, "faces.max_side", fc.max_side,
           "an integer >= 16 or null (no downscaling)")
    _check(_finite(fc.margin) and fc.margin >= 1.0, "faces.margin", fc.margin, "a number >= 1")
    _check(_finite(fc.iou_threshold) and 0 <= fc.iou_threshold <= 1, "faces.iou_threshold",
           fc.iou_threshold, "a number in [0, 1]")
    _check(fc.batch_size >= 1, "faces.batch_size", fc.batch_size, "an integer >= 1")
    _check(fc.max_faces_per_frame is None or fc.max_faces_per_frame >= 1,
           "faces.max_faces_per_frame", fc.max_faces_per_frame, "an integer >= 1 or null")
    vc = cfg.verdict
    for key in ("detector_threshold", "mri_threshold", "fake_fraction"):
        value = getattr(vc, key)
        if value is None and key != "detector_threshold":
            continue  # resolved from the generator's card or the defaults (analysis.card)
        _check(_finite(value) and 0 <= value <= 1, f"verdict.{key}", value, "a number in [0, 1]")
    rc = cfg.report
    _check(rc.worst_k >= 1, "report.worst_k", rc.worst_k, "an integer >= 1")
    _check(_finite(rc.heat_vmax) and rc.heat_vmax > 0, "report.heat_vmax", rc.heat_vmax,
           "a number > 0")
    _check(_finite(rc.low_coverage) and 0 <= rc.low_coverage <= 1, "report.low_coverage",
           rc.low_coverage, "a number in [0, 1]")
    _check(rc.thumbnail_side >= 16, "report.thumbnail_side", rc.thumbnail_side, "an integer >= 16")
    _check(rc.explain in EXPLAINERS, "report.explain", rc.explain, f"one of {', '.join(EXPLAINERS)}")
    if rc.explain == "lime" and importlib.util.find_spec("captum") is None:
        raise ConfigError("report.explain='lime' needs the optional captum package: "
                          "pip install 'mrigan[lime]' (or use report.explain=gradcam)")
    return cfg
