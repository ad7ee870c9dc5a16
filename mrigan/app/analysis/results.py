"""What ``analyze`` returns: per-face, per-frame, per-track and per-input results, and the
strict-JSON dictionary written as ``results.json`` (schema in :mod:`.schema`)."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from detectors import aggregate
from mrigan import __version__
from mrigan.app.analysis.config import AnalyzeConfig, AnalyzeVerdictConfig
from mrigan.app.analysis.schema import RESULTS_SCHEMA_VERSION, SKIP_REASONS


@dataclass(frozen=True)
class FaceResult:
    frame: int  # frame index in the video (0 for an image)
    track: int
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in frame pixels
    detection_score: float
    detection_pass: int  # 1: MTCNN with faces.thresholds, 2: the permissive second pass
    mri: dict[str, float]  # mean, p50, p90, p99, max of the predicted MRI
    fake_probability: float | None
    score: float  # the face score the verdict uses
    files: dict[str, str] = field(default_factory=dict)  # face/mri/overlay, relative to out_dir


@dataclass(frozen=True)
class FrameResult:
    index: int
    time: float | None  # seconds, when the frame rate is known
    faces: tuple[FaceResult, ...]
    thumbnail: str | None = None  # frame picture with boxes (most suspicious frames only)


@dataclass(frozen=True)
class TrackResult:
    id: int
    faces: int
    first_frame: int
    last_frame: int
    mri_mean: float
    score_mean: float
    score_max: float
    fake_probability_mean: float | None


@dataclass(frozen=True)
class Verdict:
    label: str  # "fake" or "real"
    score: float  # the rule's video-level score
    rule: str
    score_source: str  # "detector" or "mri_mean"
    thresholds: dict[str, float]
    faces: int
    explanation: str


@dataclass(frozen=True)
class InputResult:
    path: str
    kind: str  # "video" or "image"
    status: str  # "analysed" or one of SKIP_REASONS
    reason: str | None = None
    dir: str | None = None  # this input's folder, relative to out_dir
    sha256: str | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    frames_read: int = 0
    # share of the sampled frames with a face, after the second detection pass (None: not read)
    face_coverage: float | None = None
    second_pass: bool = False  # whether the permissive second detection pass ran on this input
    faces: int = 0
    frames: tuple[FrameResult, ...] = ()
    tracks: tuple[TrackResult, ...] = ()
    verdict: Verdict | None = None
    timeline: str | None = None
    warnings: tuple[str, ...] = ()

    @property
    def analysed(self) -> bool:
        return self.status == "analysed"

    def face_results(self) -> list[FaceResult]:
        return [f for fr in self.frames for f in fr.faces]


@dataclass(frozen=True)
class AnalysisResults:
    inputs: tuple[InputResult, ...]
    generator: dict[str, Any]
    detector: dict[str, Any] | None
    config: AnalyzeConfig
    created: str
    out_dir: str | None = None
    #: where the numbers were computed: ``device``, ``hardware`` (CPU model / GPU name and its
    #: bf16 capability) and the resolved inference ``precision`` of the generator and detector
    compute: dict[str, Any] = field(default_factory=dict)

    @property
    def analysed(self) -> list[InputResult]:
        return [r for r in self.inputs if r.analysed]

    def summary(self) -> dict[str, Any]:
        skipped: dict[str, int] = {}
        verdicts: dict[str, int] = {}
        for r in self.inputs:
            if r.analysed:
                verdicts[r.verdict.label] = verdicts.get(r.verdict.label, 0) + 1
            else:
                skipped[r.status] = skipped.get(r.status, 0) + 1
        skipped = {k: skipped[k] for k in SKIP_REASONS if k in skipped}  # a fixed order
        return {"inputs": len(self.inputs), "analysed": len(self.analysed), "skipped": skipped,
                "faces": sum(r.faces for r in self.inputs), "verdicts": verdicts}

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": RESULTS_SCHEMA_VERSION,
            "tool": {"name": "mrigan", "version": __version__},
            "created": self.created,
            "compute": self.compute,
            "generator": self.generator,
            "detector": self.detector,
            "config": dataclasses.asdict(self.config),
            "summary": self.summary(),
            "inputs": [_input_to_dict(r) for r in self.inputs],
        }


def _input_to_dict(r: InputResult) -> dict[str, Any]:
    d = dataclasses.asdict(r)
    d["tracks"] = [dataclasses.asdict(t) for t in r.tracks]
    return d




def strict_json(data: Any) -> str:
    """``data`` as strict JSON text (no NaN/Infinity tokens, which JSON does not have).

    A non-finite number here is a bug upstream (the pipeline turns non-finite model outputs into
    a reported skip before any result is built); the error says where it sits.
    """
    try:
        return json.dumps(data, indent=2, allow_nan=False) + "\n"
    except ValueError as exc:
        raise ValueError(f"results hold a non-finite number at {_find_non_finite(data)}") from exc


def _find_non_finite(data: Any, where: str = "$") -> str | None:
    if isinstance(data, float) and not math.isfinite(data):
        return where
    if isinstance(data, dict):
        items = ((f"{where}.{k}", v) for k, v in data.items())
    elif isinstance(data, (list, tuple)):
        items = ((f"{where}[{i}]", v) for i, v in enumerate(data))
    else:
        return None
    for w, v in items:
        found = _find_non_finite(v, w)
        if found:
            return found
    return None


def decide_verdict(scores: Sequence[float], cfg: AnalyzeVerdictConfig, score_source: str) -> Verdict:
    """One verdict from the face scores of an input, with the rule and thresholds used."""
    threshold = cfg.detector_threshold if score_source == "detector" else cfg.mri_threshold
    label, score, used = aggregate.decide(cfg.rule, scores, threshold=threshold,
                                          fraction=cfg.fake_fraction)
    # describe() prints 2 decimals; a mean-MRI threshold can be 0.001 (a card's), so say it
    what = ("the detector's P(fake)" if score_source == "detector"
            else f"its mean MRI; face threshold {threshold:g}")
    explanation = f"{aggregate.describe(cfg.rule, **used)} (a face's score: {what})"
    return Verdict(label=label, score=float(score), rule=cfg.rule, score_source=score_source,
                   thresholds={k: float(v) for k, v in used.items()}, faces=len(scores),
                   explanation=explanation)
