"""The analyst pipeline: videos/images -> frames -> faces and tracks -> MRIs (+ scores) -> results.

``analyze(paths, generator=..., detector=..., out_dir=...)`` streams every Nth frame of each
video (images are one frame), finds faces with MTCNN, crops them as the MRI-DF builder does,
batches the crops through the MRI-GAN generator (and a detector when given), groups faces into
tracks, and decides one verdict per input with a named video-level rule. With ``out_dir`` it
writes, per input, the face crops, MRIs and overlays per track, a score timeline, and for the
whole run ``results.json`` (rewritten after every input), ``report.html`` and the resolved
``config.yaml``.

Inputs are read only: every file goes under ``out_dir``, which may not lie inside an input
folder (:func:`mrigan.outputs.check_output_dir`). A file that cannot be decoded, shows no face,
or fails in any other way (a model returning NaN included) is recorded with its reason and the
run goes on; the caller decides what "nothing analysed" means (the CLI exits non-zero).

Face scores: with a detector, a face's score is its fake probability; without one it is the
face's mean predicted MRI (how much of the face the generator expects to differ from a real
one). Both go through the same aggregation rule, with thresholds recorded in the results.

Modules: ``config`` (AnalyzeConfig + up-front validation), ``results`` (result types, strict
JSON), ``schema`` (RESULTS_SCHEMA), ``inputs`` (discovery, opening), ``models`` (generator,
detector, weights files, Grad-CAM, non-finite checks), ``pipeline`` (Analyzer), ``progress``
(Monitor: progress hooks and cancellation), ``outputs`` (files written).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mrigan.app.analysis.config import (
    AnalyzeConfig,
    AnalyzeFacesConfig,
    AnalyzeFramesConfig,
    AnalyzeGeneratorConfig,
    AnalyzeReportConfig,
    AnalyzeVerdictConfig,
    validate_config,
)
from mrigan.app.analysis.inputs import (
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    ImageReadError,
    InputItem,
    discover_inputs,
)
from mrigan.app.analysis.models import (
    NonFiniteModelError,
    artifact_map,
    load_generator,
    mri_stats,
    resolve_weights,
)
from mrigan.app.analysis.outputs import write_outputs
from mrigan.app.analysis.pipeline import AnalyzeError, Analyzer, face_crops
from mrigan.app.analysis.progress import AnalysisCancelled, Monitor, TqdmMonitor
from mrigan.app.analysis.results import (
    AnalysisResults,
    FaceResult,
    FrameResult,
    InputResult,
    TrackResult,
    Verdict,
    decide_verdict,
)
from mrigan.app.analysis.schema import RESULTS_SCHEMA, RESULTS_SCHEMA_VERSION, SKIP_REASONS
from mrigan.model_card import DEFAULT_GENERATOR

__all__ = [
    "IMAGE_SUFFIXES",
    "RESULTS_SCHEMA",
    "RESULTS_SCHEMA_VERSION",
    "SKIP_REASONS",
    "VIDEO_SUFFIXES",
    "AnalysisCancelled",
    "AnalysisResults",
    "AnalyzeConfig",
    "AnalyzeError",
    "AnalyzeFacesConfig",
    "AnalyzeFramesConfig",
    "AnalyzeGeneratorConfig",
    "AnalyzeReportConfig",
    "AnalyzeVerdictConfig",
    "Analyzer",
    "FaceResult",
    "FrameResult",
    "ImageReadError",
    "InputItem",
    "InputResult",
    "Monitor",
    "NonFiniteModelError",
    "TqdmMonitor",
    "TrackResult",
    "Verdict",
    "analyze",
    "artifact_map",
    "decide_verdict",
    "discover_inputs",
    "face_crops",
    "load_generator",
    "load_results",
    "mri_stats",
    "resolve_weights",
    "validate_config",
    "write_outputs",
]


def analyze(paths: str | os.PathLike | Iterable[str | os.PathLike], generator: Any = None,
            detector: Any = None, *, out_dir: str | os.PathLike | None = None,
            config: AnalyzeConfig | None = None, progress: bool | Monitor = False,
            replace: bool = False) -> AnalysisResults:
    """Analyse videos, images or folders of them; see the module docstring.

    ``generator``: an exported ``.safetensors`` path or a loaded ``MRIGenerator``; ``None``: the
    shipped default generator (:data:`mrigan.model_card.DEFAULT_GENERATOR`; read its card's
    limits: it cannot tell real from fake on held-out videos). ``detector``:
    optional, a weights path or an object with ``predict_proba(faces=, mris=)``. Without
    ``out_dir`` nothing is written and the results hold the figures only; an ``out_dir``
    holding an earlier analysis is refused unless ``replace``. Anything but a path or a list
    of paths (an array, bytes, None) is refused with one :class:`AnalyzeError`. ``progress``:
    True for a progress bar, or a :class:`Monitor` (follows the run, may cancel it).
    """
    paths = _as_paths(paths)
    if generator is None:
        generator = DEFAULT_GENERATOR
    return Analyzer(generator, detector, config).run(paths, out_dir, progress=progress,
                                                     replace=replace)


def _as_paths(paths: Any) -> list[str | os.PathLike]:
    """``paths`` as a list of paths, or one AnalyzeError naming what was given instead."""
    if isinstance(paths, (str, os.PathLike)):
        return [paths]
    if hasattr(paths, "shape"):  # an image array: the pipeline reads files (kept as evidence)
        raise AnalyzeError(f"analyze() takes file or folder paths, got an array "
                           f"({type(paths).__name__}); save it as an image first "
                           "(mrigan.fileio.atomic_save_image) and give its path")
    items = list(paths) if isinstance(paths, Iterable) and not isinstance(
        paths, (bytes, bytearray)) else [paths]
    for item in items:
        if not isinstance(item, (str, os.PathLike)):
            raise AnalyzeError("analyze() takes a file or folder path (str or os.PathLike) "
                               f"or a list of them, got {type(item).__name__}")
    return items


def load_results(path: str | os.PathLike) -> dict[str, Any]:
    """Read a ``results.json`` back as a dictionary (e.g. to re-render its report)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))
