"""The analyst pipeline: videos/images -> frames -> faces and tracks -> MRIs (+ scores) -> results.

``analyze(paths, generator=..., detector=..., out_dir=...)`` streams every Nth frame of each
video (images are one frame), finds faces with MTCNN, crops them as the MRI-DF builder does,
batches the crops through the MRI-GAN generator (and a detector when given), groups faces into
tracks, and decides one verdict per input with a named video-level rule. With ``out_dir`` it
writes, per input, the face crops, MRIs and overlays per track, a score timeline, and for the
whole run ``results.json``, ``report.html`` and the resolved ``config.yaml``.

Inputs are read only: every file goes under ``out_dir``, which may not lie inside an input
folder. A file that cannot be decoded or shows no face is recorded with its reason and the run
goes on; the caller decides what "nothing analysed" means (the CLI exits non-zero).

Face scores: with a detector, a face's score is its fake probability; without one it is the
face's mean predicted MRI (how much of the face the generator expects to differ from a real
one). Both go through the same aggregation rule, with thresholds recorded in the results.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import heapq
import json
import os
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from datasets_builders.faces import FaceDetector, crop_face, track_faces
from datasets_builders.frames import VideoDecodeError, iter_frames, video_info
from detectors import aggregate, inference
from detectors.explain import gradcam
from detectors.explain import overlay as cam_overlay
from mrigan import __version__
from mrigan.app.report import draw_boxes, render_report, save_face_files, timeline_png
from mrigan.config import save_config
from mrigan.device import resolve_device
from mrigan.errors import MriganError
from mrigan.fileio import atomic_save_image, atomic_write_json, read_image, sha256_file
from mrigan.inference import MRIGenerator

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg",
                            ".wmv", ".flv", ".3gp", ".ts", ".mts", ".m2ts"})

#: Why an input was not analysed (the keys of ``summary["skipped"]``).
SKIP_REASONS = ("missing", "unreadable", "no_face", "error")

RESULTS_SCHEMA_VERSION = 1


class AnalyzeError(MriganError, ValueError):
    """A problem with the request itself (e.g. an output folder inside an input folder)."""


# ----------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class FramesConfig:
    every: int = 10  # analyse frames 0, every, 2*every, ...
    max_frames: int | None = None  # per video, after sampling (None = all)


@dataclass(frozen=True)
class FacesConfig:
    thresholds: tuple[float, float, float] = (0.85, 0.95, 0.95)  # MTCNN stages (paper's code)
    min_face_size: int = 40  # pixels in the full frame
    max_side: int | None = 1280  # frames larger than this are downscaled for detection only
    margin: float = 1.3  # crop side = margin * longest box side, as in the MRI-DF builder
    track_iou: float = 0.3  # a box joins the track whose last box overlaps it this much
    detect_batch: int = 8  # frames per MTCNN batch
    max_faces_per_frame: int | None = None  # keep the best-scoring N faces of a frame


@dataclass(frozen=True)
class VerdictConfig:
    """How face scores become one verdict per input (rules from ``detectors.aggregate``)."""

    rule: str = "count"
    detector_threshold: float = 0.7  # face threshold on P(fake) (paper, MRI method: 0.7)
    mri_threshold: float = 0.08  # face threshold on the mean MRI when there is no detector
    fake_fraction: float = 0.3  # "count": fake when more than this share of faces is above


@dataclass(frozen=True)
class ReportConfig:
    worst_k: int = 6  # most suspicious faces shown per input
    heat_vmax: float = 0.5  # MRI value drawn at full colour (fixed scale)
    thumbnail_side: int = 480  # longest side of the frame pictures in the report
    gradcam: bool = True  # with a frame detector: also save its Grad-CAM over each face


@dataclass(frozen=True)
class AnalyzeConfig:
    name: str = "analyze"
    device: str = "auto"
    precision: str = "auto"  # fp32 | bf16 | fp16 | auto (bf16/fp16 on CUDA, fp32 on CPU)
    batch_size: int = 32  # faces per generator / detector batch
    frames: FramesConfig = field(default_factory=FramesConfig)
    faces: FacesConfig = field(default_factory=FacesConfig)
    verdict: VerdictConfig = field(default_factory=VerdictConfig)
    report: ReportConfig = field(default_factory=ReportConfig)


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class FaceResult:
    frame: int  # frame index in the video (0 for an image)
    track: int
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in frame pixels
    detection_score: float
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


_NUM = {"type": "number"}
_NUM_OR_NULL = {"type": ["number", "null"]}
_STR_OR_NULL = {"type": ["string", "null"]}
_INT = {"type": "integer", "minimum": 0}

#: JSON Schema (draft 2020-12) of ``results.json``.
RESULTS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "mrigan analyze results",
    "type": "object",
    "required": ["schema_version", "tool", "created", "generator", "detector", "config",
                 "summary", "inputs"],
    "properties": {
        "schema_version": {"const": RESULTS_SCHEMA_VERSION},
        "tool": {"type": "object", "required": ["name", "version"]},
        "created": {"type": "string"},
        "generator": {"type": "object", "required": ["path", "image_size"]},
        "detector": {"type": ["object", "null"]},
        "config": {"type": "object", "required": ["frames", "faces", "verdict"]},
        "summary": {
            "type": "object",
            "required": ["inputs", "analysed", "skipped", "faces", "verdicts"],
            "properties": {"inputs": _INT, "analysed": _INT, "faces": _INT,
                           "skipped": {"type": "object",
                                       "propertyNames": {"enum": list(SKIP_REASONS)},
                                       "additionalProperties": _INT},
                           "verdicts": {"type": "object",
                                        "propertyNames": {"enum": ["fake", "real"]},
                                        "additionalProperties": _INT}},
        },
        "inputs": {"type": "array", "items": {"$ref": "#/$defs/input"}},
    },
    "$defs": {
        "input": {
            "type": "object",
            "required": ["path", "kind", "status", "reason", "frames", "tracks", "verdict"],
            "properties": {
                "path": {"type": "string"},
                "kind": {"enum": ["video", "image"]},
                "status": {"enum": ["analysed", *SKIP_REASONS]},
                "reason": _STR_OR_NULL, "dir": _STR_OR_NULL, "sha256": _STR_OR_NULL,
                "fps": _NUM_OR_NULL, "frames_read": _INT, "faces": _INT,
                "timeline": _STR_OR_NULL,
                "frames": {"type": "array", "items": {"$ref": "#/$defs/frame"}},
                "tracks": {"type": "array", "items": {"$ref": "#/$defs/track"}},
                "verdict": {"oneOf": [{"type": "null"}, {"$ref": "#/$defs/verdict"}]},
                "warnings": {"type": "array", "items": {"type": "string"}},
            },
            "if": {"properties": {"status": {"const": "analysed"}}},
            "then": {"properties": {"verdict": {"$ref": "#/$defs/verdict"},
                                    "frames": {"minItems": 1}}},
            "else": {"properties": {"reason": {"type": "string"}, "verdict": {"type": "null"}}},
        },
        "frame": {
            "type": "object", "required": ["index", "time", "faces"],
            "properties": {"index": _INT, "time": _NUM_OR_NULL, "thumbnail": _STR_OR_NULL,
                           "faces": {"type": "array", "items": {"$ref": "#/$defs/face"}}},
        },
        "face": {
            "type": "object",
            "required": ["frame", "track", "box", "detection_score", "mri", "fake_probability",
                         "score", "files"],
            "properties": {
                "frame": _INT, "track": _INT,
                "box": {"type": "array", "items": _NUM, "minItems": 4, "maxItems": 4},
                "detection_score": {"type": "number", "minimum": 0, "maximum": 1},
                "mri": {"type": "object", "required": ["mean", "p50", "p90", "p99", "max"],
                        "additionalProperties": {"type": "number", "minimum": 0, "maximum": 1}},
                "fake_probability": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
                "score": _NUM,
                "files": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "track": {
            "type": "object",
            "required": ["id", "faces", "first_frame", "last_frame", "mri_mean", "score_max"],
            "properties": {"id": _INT, "faces": {"type": "integer", "minimum": 1},
                           "first_frame": _INT, "last_frame": _INT, "mri_mean": _NUM,
                           "score_mean": _NUM, "score_max": _NUM,
                           "fake_probability_mean": _NUM_OR_NULL},
        },
        "verdict": {
            "type": "object",
            "required": ["label", "score", "rule", "score_source", "thresholds", "faces"],
            "properties": {"label": {"enum": ["fake", "real"]}, "score": _NUM,
                           "rule": {"type": "string"},
                           "score_source": {"enum": ["detector", "mri_mean"]},
                           "thresholds": {"type": "object", "additionalProperties": _NUM},
                           "faces": {"type": "integer", "minimum": 1},
                           "explanation": {"type": "string"}},
        },
    },
}


# ----------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class InputItem:
    path: Path
    kind: str  # "video", "image" or "missing"


def discover_inputs(paths: Iterable[str | os.PathLike]) -> list[InputItem]:
    """Files named on the command line, and the images/videos found (recursively) in folders.

    A file given explicitly is taken whatever its suffix (as a video unless it has an image
    suffix: the decoder then says whether it is one); inside folders only known image and video
    suffixes are taken, hidden files and folders skipped. Order: as given, folders sorted.
    Duplicates (the same resolved file twice) are kept once.
    """
    items: list[InputItem] = []
    seen: set[Path] = set()

    def add(p: Path, kind: str) -> None:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            items.append(InputItem(p, kind))

    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                rel = f.relative_to(p).parts
                if not f.is_file() or any(part.startswith(".") for part in rel):
                    continue
                suffix = f.suffix.lower()
                if suffix in IMAGE_SUFFIXES:
                    add(f, "image")
                elif suffix in VIDEO_SUFFIXES:
                    add(f, "video")
        elif p.is_file():
            add(p, "image" if p.suffix.lower() in IMAGE_SUFFIXES else "video")
        else:
            add(p, "missing")
    return items


def check_output_dir(out_dir: str | os.PathLike, inputs: Iterable[str | os.PathLike]) -> Path:
    """Refuse an output folder that is, or lies inside, an input folder or an input's folder.

    Analysts' evidence folders must stay exactly as received; writing reports beside a video
    would also make a later folder scan pick them up as inputs.
    """
    out = Path(out_dir).resolve()
    for raw in inputs:
        p = Path(raw)
        guarded = p.resolve() if p.is_dir() else p.resolve().parent
        if out == guarded or guarded in out.parents:
            raise AnalyzeError(
                f"output folder {out_dir} lies inside the input folder {guarded}: "
                "choose an --out outside the inputs (inputs are never written to)")
    return out


def _slug(path: Path, index: int) -> str:
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in path.stem)[:60] or "input"
    return f"{index:02d}_{stem}"


# ----------------------------------------------------------------------------- models


def load_generator(generator: Any, device: str = "auto", precision: str = "fp32"):
    """An ``MRIGenerator`` from a path (``.safetensors`` export or checkpoint), or as given."""
    if isinstance(generator, (str, os.PathLike)):

        return MRIGenerator.load(generator, device=device, precision=precision)
    if not hasattr(generator, "predict") or not hasattr(generator, "image_size"):
        raise TypeError("generator must be a weights path or an object with predict() and "
                        f"image_size (an MRIGenerator), got {type(generator).__name__}")
    return generator


def _as_mri_array(mris: Any, n: int) -> np.ndarray:
    """Generator output (tensor or array, NCHW or NHWC) -> float32 (N, H, W, 3) in [0, 1]."""
    if hasattr(mris, "detach"):
        mris = mris.detach().float().cpu().numpy()
    arr = np.asarray(mris, dtype=np.float32)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[0] != n:
        raise ValueError(f"generator returned shape {arr.shape} for {n} faces")
    if arr.shape[1] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = arr.transpose(0, 2, 3, 1)
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return np.clip(arr, 0.0, 1.0)


def _file_info(path: Any, obj: Any) -> dict[str, Any]:

    info: dict[str, Any] = {"path": str(path) if isinstance(path, (str, os.PathLike))
                            else type(obj).__name__}
    if isinstance(path, (str, os.PathLike)) and Path(path).is_file():
        info["sha256"] = sha256_file(path)
    return info


def artifact_map(face_image: Any, generator: Any, *, device: str = "auto") -> np.ndarray:
    """The MRI-GAN artifact map (HxWx3 float32 in [0, 1]) of one face crop.

    ``face_image``: an HxWx3 uint8 RGB array or an image file path, already cropped to the face
    (use ``analyze`` for whole frames and videos). It is resized to the generator's input size
    and the map is returned at that size. ``generator``: a weights path or an ``MRIGenerator``.
    """
    import cv2


    face = read_image(face_image) if isinstance(face_image, (str, os.PathLike)) else np.asarray(face_image)
    if face.ndim != 3 or face.shape[2] != 3 or face.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB face, got {face.shape} {face.dtype}")
    gen = load_generator(generator, device)
    size = int(gen.image_size)
    if face.shape[:2] != (size, size):
        interp = cv2.INTER_AREA if max(face.shape[:2]) > size else cv2.INTER_LINEAR
        face = cv2.resize(face, (size, size), interpolation=interp)
    return _as_mri_array(gen.predict([face]), 1)[0]


def mri_stats(mri: np.ndarray) -> dict[str, float]:
    """Mean, median, 90th/99th percentile and max of one MRI (all channels)."""
    p50, p90, p99 = np.percentile(mri, [50, 90, 99])
    return {"mean": float(mri.mean()), "p50": float(p50), "p90": float(p90),
            "p99": float(p99), "max": float(mri.max())}


# ----------------------------------------------------------------------------- verdicts


def decide_verdict(scores: Sequence[float], cfg: VerdictConfig, score_source: str) -> Verdict:
    """One verdict from the face scores of an input, with the rule and thresholds used."""

    threshold = cfg.detector_threshold if score_source == "detector" else cfg.mri_threshold
    label, score, used = aggregate.decide(cfg.rule, scores, threshold=threshold,
                                          fraction=cfg.fake_fraction)
    what = "the detector's P(fake)" if score_source == "detector" else "its mean MRI"
    explanation = f"{aggregate.describe(cfg.rule, **used)} (a face's score: {what})"
    return Verdict(label=label, score=float(score), rule=cfg.rule, score_source=score_source,
                   thresholds={k: float(v) for k, v in used.items()}, faces=len(scores),
                   explanation=explanation)


# ----------------------------------------------------------------------------- the pipeline


@dataclass
class _Pending:
    """A face waiting for its generator batch."""

    frame: int
    slot: int  # position of this face's box in its frame's box list
    box: Any
    crop: np.ndarray


@dataclass
class _InputState:
    """What one input accumulates while its frames stream through."""

    item: InputItem
    dir: str | None
    fps: float | None = None
    frame_order: list[int] = field(default_factory=list)
    position: dict[int, int] = field(default_factory=dict)  # frame index -> position
    boxes: list[list[Any]] = field(default_factory=list)
    faces: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    worst: list[tuple[float, int, np.ndarray, list[Any]]] = field(default_factory=list)
    pending_frames: dict[int, tuple[np.ndarray, float]] = field(default_factory=dict)  # thumb, scale
    warnings: list[str] = field(default_factory=list)


class Analyzer:
    """Holds the loaded models so many inputs (or many ``analyze`` calls) share them."""

    def __init__(self, generator: Any, detector: Any = None, config: AnalyzeConfig | None = None,
                 face_detector: Any = None) -> None:

        self.config = config or AnalyzeConfig()
        self.device = resolve_device(self.config.device)
        self.generator_info = _file_info(generator, generator)
        self.generator = load_generator(generator, str(self.device), self.config.precision)
        self.generator_info["image_size"] = int(self.generator.image_size)
        self.detector = None
        self.detector_info = None
        if detector is not None:
            self.detector = _load_detector(detector, str(self.device), self.config.precision)
            self.detector_info = _file_info(detector, self.detector)
        if face_detector is None:

            fc = self.config.faces
            face_detector = FaceDetector(device=str(self.device), thresholds=fc.thresholds,
                                         min_face_size=fc.min_face_size, max_side=fc.max_side,
                                         batch_size=fc.detect_batch)
        self.face_detector = face_detector

    # -- public

    def run(self, paths: Iterable[str | os.PathLike], out_dir: str | os.PathLike | None = None,
            progress: bool = False, on_input: Callable[[InputResult], None] | None = None,
            ) -> AnalysisResults:
        paths = list(paths)
        if not paths:
            raise AnalyzeError("no input given")
        out = check_output_dir(out_dir, paths) if out_dir is not None else None
        items = discover_inputs(paths)
        results = []
        for i, item in enumerate(items, 1):
            r = self._run_one(item, _slug(item.path, i) if out else None, out, progress)
            results.append(r)
            if on_input:
                on_input(r)
        created = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        res = AnalysisResults(inputs=tuple(results), generator=self.generator_info,
                              detector=self.detector_info, config=self.config, created=created,
                              out_dir=str(out) if out else None)
        if out is not None:
            write_outputs(res, out)
        return res

    # -- one input

    def _run_one(self, item: InputItem, slug: str | None, out: Path | None,
                 progress: bool) -> InputResult:
        base = {"path": str(item.path), "kind": "image" if item.kind == "image" else "video"}
        if item.kind == "missing":
            return InputResult(**base, status="missing", reason="no such file or folder")

        try:
            sha = sha256_file(item.path)
            frames, meta = self._open(item)
            state = _InputState(item=item, dir=slug, fps=meta.pop("fps", None))
            self._stream(frames, state, out, progress, meta.pop("sampled_frames", None))
        except (VideoDecodeError, ImageReadError) as exc:
            return InputResult(**base, status="unreadable", reason=str(exc))
        except OSError as exc:
            return InputResult(**base, status="unreadable", reason=f"{item.path}: {exc}")
        except Exception as exc:  # noqa: BLE001 - one bad input must not end a batch; it is reported
            reason = f"{type(exc).__name__}: {exc}"
            if out is not None:
                _append_error_log(out, item.path, traceback.format_exc())
            return InputResult(**base, status="error", reason=reason)
        if not state.faces:
            return InputResult(**base, status="no_face", dir=None, sha256=sha, fps=state.fps,
                               frames_read=len(state.frame_order),
                               reason=f"no face found in {len(state.frame_order)} frame(s)",
                               warnings=tuple(state.warnings), **meta)
        return self._finish(state, base, sha, meta, out)

    def _open(self, item: InputItem) -> tuple[Iterator[tuple[int, np.ndarray]], dict[str, Any]]:
        if item.kind == "image":

            try:
                img = read_image(item.path)
            except ValueError as exc:
                raise ImageReadError(str(exc)) from exc
            return iter([(0, img)]), {"width": img.shape[1], "height": img.shape[0]}

        info = video_info(item.path)
        frames = iter_frames(item.path, every=self.config.frames.every,
                             max_frames=self.config.frames.max_frames)
        sampled = -(-info.frames // self.config.frames.every) if info.frames else None
        if sampled is not None and self.config.frames.max_frames is not None:
            sampled = min(sampled, self.config.frames.max_frames)
        return frames, {"width": info.width, "height": info.height, "fps": info.fps or None,
                        "sampled_frames": sampled}

    def _stream(self, frames: Iterator[tuple[int, np.ndarray]], state: _InputState,
                out: Path | None, progress: bool, total: int | None = None) -> None:

        cfg = self.config
        size = int(self.generator.image_size)
        pending: list[_Pending] = []
        bar = _progress(state.item, total) if progress else None
        batch: list[tuple[int, np.ndarray]] = []

        def detect(batch: list[tuple[int, np.ndarray]]) -> None:
            boxes = self.face_detector.detect([f for _, f in batch])
            for (index, frame), found in zip(batch, boxes, strict=True):
                if cfg.faces.max_faces_per_frame is not None:
                    found = found[:cfg.faces.max_faces_per_frame]
                state.position[index] = len(state.frame_order)
                state.frame_order.append(index)
                state.boxes.append(list(found))
                if found:
                    state.pending_frames[index] = _thumbnail(frame, cfg.report.thumbnail_side)
                for slot, box in enumerate(found):
                    pending.append(_Pending(index, slot, box, crop_face(frame, box, cfg.faces.margin, size)))
            if bar is not None:
                bar.update(len(batch))

        try:
            for index, frame in frames:
                batch.append((index, frame))
                if len(batch) >= cfg.faces.detect_batch:
                    detect(batch)
                    batch = []
                if len(pending) >= cfg.batch_size:
                    self._score(pending, state, out)
                    pending = []
        except VideoDecodeError as exc:
            if not state.frame_order and not batch:
                raise
            state.warnings.append(f"decoding stopped early: {exc}")
        if batch:
            detect(batch)
        if pending:
            self._score(pending, state, out)
        if bar is not None:
            bar.close()

    def _score(self, pending: list[_Pending], state: _InputState, out: Path | None) -> None:
        """Generator (and detector) on a batch of faces; record stats, write files."""

        crops = [p.crop for p in pending]
        mris = _as_mri_array(self.generator.predict(crops), len(crops))
        probs = self._fake_probabilities(crops, mris) if self.detector is not None else None
        cams = self._gradcams(crops, mris) if out is not None else None
        for k, p in enumerate(pending):
            stats = mri_stats(mris[k])
            prob = None if probs is None else float(probs[k])
            score = prob if prob is not None else stats["mean"]
            files: dict[str, str] = {}
            if out is not None:
                stem = f"{state.dir}/faces/frame_{p.frame:06d}_face{p.slot}"
                files = {kind: f"{stem}_{kind}.png" for kind in ("face", "mri", "overlay")}
                save_face_files(p.crop, mris[k], {kind: out / rel for kind, rel in files.items()},
                                vmax=self.config.report.heat_vmax)
                if cams is not None:

                    files["gradcam"] = f"{stem}_gradcam.png"
                    atomic_save_image(out / files["gradcam"], cams[k])
            state.faces[(p.frame, p.slot)] = {
                "box": p.box, "stats": stats, "prob": prob, "score": float(score), "files": files}
        self._update_worst(pending, state)

    def _update_worst(self, pending: list[_Pending], state: _InputState) -> None:
        """Keep small pictures of the ``worst_k`` frames with the highest face score."""

        k = self.config.report.worst_k
        for index in sorted({p.frame for p in pending}):
            small, scale = state.pending_frames.pop(index)
            boxes = state.boxes[state.position[index]]
            scores = [state.faces[(index, s)]["score"] for s in range(len(boxes))]
            score = max(scores)
            if len(state.worst) < k or score > state.worst[0][0]:
                thumb = draw_boxes(small, [(b.x0 * scale, b.y0 * scale, b.x1 * scale, b.y1 * scale)
                                           for b in boxes], [f"{v:.3f}" for v in scores],
                                   highlight=int(np.argmax(scores)), max_side=max(small.shape))
                entry = (score, index, thumb, boxes)
                if len(state.worst) < k:
                    heapq.heappush(state.worst, entry)
                else:
                    heapq.heapreplace(state.worst, entry)

    def _fake_probabilities(self, crops: list[np.ndarray], mris: np.ndarray) -> np.ndarray:
        probs = np.asarray(self.detector.predict_proba(faces=crops, mris=mris), dtype=np.float64)
        if probs.shape != (len(crops),):
            raise ValueError(f"detector returned {probs.shape} probabilities for {len(crops)} faces")
        return probs

    def _gradcams(self, crops: list[np.ndarray], mris: np.ndarray) -> list[np.ndarray] | None:
        """Grad-CAM of a frame detector (``detectors.explain``) drawn over each face crop; the
        MRI is pixel-aligned with the face, so an MRI detector's map is drawn there too."""
        model = getattr(self.detector, "model", None)
        if (not self.config.report.gradcam or model is None or getattr(model, "temporal", False)
                or not hasattr(model, "backbone")):
            return None
        import torch
        import torch.nn.functional as F


        images = mris if getattr(self.detector, "input_name", "plain") == "mri" else np.stack(crops)
        x = torch.from_numpy(np.ascontiguousarray(np.asarray(images).transpose(0, 3, 1, 2)))
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
        size = int(getattr(self.detector, "image_size", x.shape[-1]))
        if x.shape[-1] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                              antialias=True)
        device = next(model.parameters()).device
        heat, _logits = gradcam(model, x.to(device))
        return [cam_overlay(face, h) for face, h in zip(crops, heat.cpu().numpy(), strict=True)]

    def _finish(self, state: _InputState, base: dict[str, Any], sha: str, meta: dict[str, Any],
                out: Path | None) -> InputResult:

        cfg = self.config
        tracks = track_faces(state.boxes, cfg.faces.track_iou)
        track_of: dict[tuple[int, int], int] = {}
        for t, members in enumerate(tracks):
            for pos, box in members:
                slot = next(i for i, b in enumerate(state.boxes[pos]) if b is box)
                track_of[(state.frame_order[pos], slot)] = t
        if out is not None:
            _move_into_tracks(state, track_of, out)
        thumbs: dict[int, str] = {}
        if out is not None:

            for _score, index, thumb, _boxes in state.worst:
                rel = f"{state.dir}/frames/frame_{index:06d}.jpg"
                atomic_save_image(out / rel, thumb)
                thumbs[index] = rel
        frames = []
        for pos, index in enumerate(state.frame_order):
            faces = []
            for slot in range(len(state.boxes[pos])):
                f = state.faces[(index, slot)]
                b = f["box"]
                faces.append(FaceResult(
                    frame=index, track=track_of[(index, slot)],
                    box=(round(b.x0, 2), round(b.y0, 2), round(b.x1, 2), round(b.y1, 2)),
                    detection_score=float(b.score), mri=f["stats"], fake_probability=f["prob"],
                    score=f["score"], files=f["files"]))
            time = index / state.fps if state.fps else None
            frames.append(FrameResult(index=index, time=time, faces=tuple(faces),
                                      thumbnail=thumbs.get(index)))
        all_faces = [f for fr in frames for f in fr.faces]
        track_results = []
        for t in range(len(tracks)):
            mine = [f for f in all_faces if f.track == t]
            probs = [f.fake_probability for f in mine if f.fake_probability is not None]
            track_results.append(TrackResult(
                id=t, faces=len(mine), first_frame=min(f.frame for f in mine),
                last_frame=max(f.frame for f in mine),
                mri_mean=float(np.mean([f.mri["mean"] for f in mine])),
                score_mean=float(np.mean([f.score for f in mine])),
                score_max=float(max(f.score for f in mine)),
                fake_probability_mean=float(np.mean(probs)) if probs else None))
        source = "detector" if self.detector is not None else "mri_mean"
        verdict = decide_verdict([f.score for f in all_faces], cfg.verdict, source)
        timeline = None
        if out is not None and state.item.kind == "video":

            timeline = f"{state.dir}/timeline.png"
            threshold = verdict.thresholds.get("threshold")
            timeline_png(out / timeline,
                         [{"frame": f.frame, "track": f.track, "mri_mean": f.mri["mean"],
                           "fake_probability": f.fake_probability} for f in all_faces],
                         threshold=threshold, score_source=source, fps=state.fps,
                         title=f"{state.item.path.name}: {verdict.label.upper()}")
        return InputResult(**base, status="analysed", dir=state.dir, sha256=sha, fps=state.fps,
                           frames_read=len(state.frame_order), faces=len(all_faces),
                           frames=tuple(frames), tracks=tuple(track_results), verdict=verdict,
                           timeline=timeline, warnings=tuple(state.warnings), **meta)


def _thumbnail(frame: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """A copy of ``frame`` no larger than ``max_side``, and the scale applied (kept instead of
    the full frame until the frame's faces are scored)."""
    import cv2

    h, w = frame.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale == 1.0:
        return frame.copy(), 1.0
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA), size[0] / w


class ImageReadError(MriganError, ValueError):
    """An image file that cannot be decoded."""


def _load_detector(detector: Any, device: str, precision: str = "fp32"):
    if isinstance(detector, (str, os.PathLike)):

        return inference.load_detector(detector, device=device, precision=precision)
    if not hasattr(detector, "predict_proba"):
        raise TypeError("detector must be a weights path or an object with predict_proba(faces=, "
                        f"mris=), got {type(detector).__name__}")
    return detector


def _move_into_tracks(state: _InputState, track_of: dict[tuple[int, int], int], out: Path) -> None:
    """Per-face files were written before tracks were known; file them under track_NN/."""
    for key, f in state.faces.items():
        moved = {}
        for kind, rel in f["files"].items():
            new_rel = rel.replace("/faces/", f"/track_{track_of[key]:02d}/", 1)
            (out / new_rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(out / rel, out / new_rel)
            moved[kind] = new_rel
        f["files"] = moved
    faces_dir = out / (state.dir or "") / "faces"
    if faces_dir.is_dir() and not any(faces_dir.iterdir()):
        faces_dir.rmdir()


def _append_error_log(out: Path, path: Path, text: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "errors.log", "a", encoding="utf-8") as fh:  # an append-only log
        fh.write(f"--- {path}\n{text}\n")


def _progress(item: InputItem, total: int | None):
    from tqdm import tqdm

    return tqdm(desc=item.path.name[:40], total=total, unit="frame", leave=False,
                dynamic_ncols=True)


def write_outputs(results: AnalysisResults, out: Path) -> None:
    """results.json, the resolved config.yaml and report.html under ``out``."""

    data = results.to_dict()
    atomic_write_json(out / "results.json", data)
    save_config(results.config, out / "config.yaml")
    render_report(data, out, worst_k=results.config.report.worst_k,
                  vmax=results.config.report.heat_vmax)


def analyze(paths: str | os.PathLike | Iterable[str | os.PathLike], generator: Any,
            detector: Any = None, *, out_dir: str | os.PathLike | None = None,
            config: AnalyzeConfig | None = None, progress: bool = False) -> AnalysisResults:
    """Analyse videos, images or folders of them; see the module docstring.

    ``generator``: an exported ``.safetensors`` path or a loaded ``MRIGenerator``. ``detector``:
    optional, a weights path or an object with ``predict_proba(faces=, mris=)``. Without
    ``out_dir`` nothing is written and the results hold the figures only.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    return Analyzer(generator, detector, config).run(paths, out_dir, progress=progress)


def load_results(path: str | os.PathLike) -> dict[str, Any]:
    """Read a ``results.json`` back as a dictionary (e.g. to re-render its report)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))
