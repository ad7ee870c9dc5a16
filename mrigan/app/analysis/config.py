"""The analyst pipeline's configuration (``AnalyzeConfig``) and its up-front validation.

Ranges and choices are ``bounds`` metadata (:class:`mrigan.config.Checked`), checked when a
section is loaded from YAML (file and key named) or built in Python (class and field named);
``validate_config`` adds what depends on the installation (the aggregation rule registry, the
optional captum package for LIME). Both happen before any model is loaded or any input is read,
so a bad value (``verdict.rule=bogus``, ``frames.every=0``) fails at once with a
:class:`ConfigError` instead of after every input has been analysed.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field

from datasets_builders.faces import RECALL_SECOND_PASS_BELOW, FaceDetectionConfig
from detectors import aggregate
from detectors.lime_explain import LimeConfig
from mrigan.config import RUN_NAME, Checked, ConfigError, bounds
from mrigan.fingerprint import runtime

#: frames.decode_once: the most bytes of one video's sampled frames kept for replay (beyond it,
#: each pass decodes again, as without decode_once)
DECODE_ONCE_BYTES = 1 << 30


@dataclass(frozen=True)
class AnalyzeFramesConfig(Checked):
    every: int = 10  # analyse frames 0, every, 2*every, ...
    # per video, after sampling (None = all)
    max_frames: int | None = field(default=None, metadata=bounds(minimum=1))
    # decode each video once, in a background thread ahead of detection, and replay its
    # sampled frames from memory (up to DECODE_ONCE_BYTES) for the second detection pass and
    # the crop pass, instead of decoding it again for each (the same frames: results equal)
    decode_once: bool = field(default=True, metadata=runtime())


@dataclass(frozen=True)
class AnalyzeFacesConfig(FaceDetectionConfig):
    """Face detection of the analysis: ``datasets_builders.faces.FaceDetectionConfig`` (the one
    set of detection defaults: thresholds, min_face_size, max_side, batch_size, margin,
    iou_threshold, ...) with the permissive second pass ON (issue 11: recall matters more than
    precision when analysing a suspect video), 32 frames per MTCNN call, and two analysis-only
    fields. ``size`` is replaced
    by the generator's input size and ``device`` "auto" by the analysis' device."""

    second_pass_below: float = RECALL_SECOND_PASS_BELOW
    # keep the best-scoring N faces of a frame (None = all)
    max_faces_per_frame: int | None = field(default=None, metadata=bounds(minimum=1))
    # the crop around a face: never tighter than the detector's box when analysing
    margin: float = field(default=FaceDetectionConfig.margin, metadata=bounds(minimum=1.0))
    # frames per MTCNN call (the builders' 8 otherwise): the same boxes bit for bit, fewer and
    # larger calls (tests/datasets_builders/test_mtcnn_cascade.py; bench/analyze.py)
    batch_size: int = field(default=32, metadata=runtime())  # >= 1: the named rule
    # torch threads while MTCNN runs (None: torch's setting). 1 gives the same boxes and is
    # faster on 2 cores shared with other jobs (2.6-3.7x at load 7-10), slower on a quiet
    # machine (0.82-0.94x): bench/analyze.py measures both; the default keeps torch's
    threads: int | None = field(default=None, metadata=bounds(minimum=1))


@dataclass(frozen=True)
class AnalyzeVerdictConfig(Checked):
    """How face scores become one verdict per input (rules from ``detectors.aggregate``)."""

    rule: str = "count"  # a name of detectors.aggregate.RULES (checked by validate_config)
    # face threshold on P(fake) (paper, MRI method: 0.7)
    detector_threshold: float = field(default=0.7, metadata=bounds(minimum=0.0, maximum=1.0))
    # face threshold on the mean MRI when there is no detector; null: the generator's model
    # card's (chosen on validation videos), else 0.08 (mrigan.model_card.DEFAULT_MRI_THRESHOLD)
    mri_threshold: float | None = field(default=None, metadata=bounds(minimum=0.0, maximum=1.0))
    # "count": fake when more than this share of faces is above; null: the card's (without a
    # detector), else 0.3
    fake_fraction: float | None = field(default=None, metadata=bounds(minimum=0.0, maximum=1.0))


@dataclass(frozen=True)
class AnalyzeReportConfig(Checked):
    # most suspicious faces shown per input
    worst_k: int = field(default=6, metadata=bounds(minimum=1))
    # MRI value drawn at full colour (fixed scale; MRIs lie in [0, 1])
    heat_vmax: float = field(default=0.5, metadata=bounds(exclusive_minimum=0.0, maximum=1.0))
    # longest side of the frame pictures in the report
    thumbnail_side: int = field(default=480, metadata=bounds(minimum=16))
    # warn next to the verdict when faces were found in fewer than this share of the sampled
    # frames (after the second detection pass): the verdict then rests on few frames
    low_coverage: float = field(default=0.5, metadata=bounds(minimum=0.0, maximum=1.0))
    # with a frame detector, what explains its score over each face: gradcam (detectors.explain)
    # | lime (detectors.lime_explain, optional extra mrigan[lime]; lime.n_samples forward
    # passes per face, so it runs only on the worst_k faces the report shows) | none
    explain: str = field(default="gradcam", metadata=bounds(choices=("gradcam", "lime", "none")))
    lime: LimeConfig = field(default_factory=LimeConfig)  # settings for explain=lime (seeded)


@dataclass(frozen=True)
class AnalyzeGeneratorConfig(Checked):
    # what runs the generator: torch | onnx (onnxruntime on the CPU, float32; optional extra
    # mrigan[onnx]; .safetensors weights are exported in memory first) | auto (onnx for an
    # .onnx --generator, torch otherwise)
    backend: str = field(default="auto", metadata=bounds(choices=("auto", "torch", "onnx")))


@dataclass(frozen=True)
class AnalyzeConfig(Checked):
    name: str = field(default="analyze", metadata=RUN_NAME)
    device: str = "auto"
    precision: str = "auto"  # fp32 | bf16 | fp16 | auto (bf16/fp16 on CUDA, fp32 on every CPU)
    batch_size: int = 32  # faces per generator / detector batch
    generator: AnalyzeGeneratorConfig = field(default_factory=AnalyzeGeneratorConfig)
    frames: AnalyzeFramesConfig = field(default_factory=AnalyzeFramesConfig)
    faces: AnalyzeFacesConfig = field(default_factory=AnalyzeFacesConfig)
    verdict: AnalyzeVerdictConfig = field(default_factory=AnalyzeVerdictConfig)
    report: AnalyzeReportConfig = field(default_factory=AnalyzeReportConfig)


def validate_config(cfg: AnalyzeConfig) -> AnalyzeConfig:
    """What the sections' ranges cannot say (they are checked when a section is built): the
    verdict rule is a registered aggregation rule, and LIME has its optional package. Returns
    ``cfg``; raises :class:`mrigan.config.ConfigError` naming the key."""
    rules = aggregate.RULES.names()
    if cfg.verdict.rule not in rules:
        raise ConfigError(f"verdict.rule={cfg.verdict.rule!r}: expected one of {', '.join(rules)}")
    if cfg.generator.backend == "onnx" and importlib.util.find_spec("onnxruntime") is None:
        raise ConfigError("generator.backend='onnx' needs the optional onnxruntime package: "
                          "pip install 'mrigan[onnx]' (or use generator.backend=torch)")
    if cfg.report.explain == "lime" and importlib.util.find_spec("captum") is None:
        raise ConfigError("report.explain='lime' needs the optional captum package: "
                          "pip install 'mrigan[lime]' (or use report.explain=gradcam)")
    return cfg
