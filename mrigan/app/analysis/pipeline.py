"""The streaming pipeline: one input at a time, frames -> faces -> MRIs (+ P(fake)) -> tracks ->
one verdict, with every per-input step inside one guard so a bad input (or a file name, or a
model output) is a reported skip and never loses the batch.

``face_crops`` is the face loop: the project's one face-track iterator
(``datasets_builders.faces.iter_face_tracks``: MTCNN in batches, the permissive second pass when
under ``faces.second_pass_below`` of the sampled frames show a face, tracks, the builder's square
crop). Its detection passes decode the video and keep boxes only; the crop pass then streams
frames through the generator. With ``frames.decode_once`` (the default) a video is decoded
once, in a background thread ahead of detection, and its sampled frames are replayed from
memory for the later passes (up to ``DECODE_ONCE_BYTES``; beyond, each pass decodes again and
no video is held in memory).

Speed (issue 14 goal 4, ``bench/analyze.py``): on a CPU the time is the generator and MTCNN;
the rest is kept small - the generator gets one stacked uint8 batch per call, and without
``out_dir`` the report-only pictures (frame thumbnails, worst-k frames) are not made. Neither
changes a figure (``tests/app/test_analyze_levers.py``).

(About 500 lines: the Analyzer's per-input states - stream, score, track, finish - share one
guard and one state object; splitting them would pass that state between modules.)
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import heapq
import os
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from datasets_builders.faces import (
    Detectors,
    FaceDetectionConfig,
    FaceDetector,
    FaceSkipError,
    FrameSource,
    TrackedFrame,
    iter_face_tracks,
)
from datasets_builders.frames import VideoDecodeError
from datasets_builders.prefetch import decoded_once
from mrigan.app.analysis.card import card_info, generator_card, resolve_verdict
from mrigan.app.analysis.config import DECODE_ONCE_BYTES, AnalyzeConfig, validate_config
from mrigan.app.analysis.inputs import (
    ImageReadError,
    InputItem,
    discover_inputs,
    input_slug,
    open_input,
)
from mrigan.app.analysis.models import (
    NonFiniteModelError,
    as_mri_array,
    check_finite_weights,
    describe_model,
    explanation_overlays,
    fake_probabilities,
    file_info,
    load_detector,
    load_generator,
    mri_stats,
)
from mrigan.app.analysis.outputs import (
    append_error_log,
    check_earlier_run,
    move_into_tracks,
    write_outputs,
    write_progress,
)
from mrigan.app.analysis.progress import AnalysisCancelled, Monitor, TqdmMonitor
from mrigan.app.analysis.results import (
    AnalysisResults,
    FaceResult,
    FrameResult,
    InputResult,
    TrackResult,
    decide_verdict,
)
from mrigan.app.report import draw_boxes, save_face_files, timeline_png
from mrigan.device import compute_record, resolve_device, resolve_precision
from mrigan.errors import MriganError
from mrigan.fileio import atomic_save_image, printable, read_image, sha256_file
from mrigan.outputs import BatchRun, check_output_dir, stop_reason


class AnalyzeError(MriganError, ValueError):
    """A problem with the request itself (e.g. no input given)."""


# ----------------------------------------------------------------------------- the face loop


def face_crops(frames: FrameSource, face_detector: Detectors | FaceDetector | None,
               cfg: FaceDetectionConfig, max_faces: int | None = None) -> Iterator[TrackedFrame]:
    """The shared face-track loop (``datasets_builders.faces.iter_face_tracks``) on one input,
    each frame's faces cut to the best-scoring ``max_faces`` (their tracks renumbered by first
    appearance). ``frames()`` starts a fresh ``(index, frame)`` stream; it is called once per
    detection pass and once for the crops (a video is decoded again, never buffered)."""
    renumber: dict[int, int] = {}
    for tf in iter_face_tracks(frames, face_detector, cfg):
        faces = tf.faces if max_faces is None else tf.faces[:max_faces]  # best score first
        if max_faces is not None:
            faces = tuple(replace(f, track=renumber.setdefault(f.track, len(renumber)))
                          for f in faces)
            tf = replace(tf, faces=faces)
        yield tf


def tolerant(source: FrameSource, warnings: list[str]) -> FrameSource:
    """``source`` whose streams end quietly at a decode error after some frames (the message
    recorded once in ``warnings``); before any frame the error propagates (unreadable input).
    Every pass sees the same frames: decoding a file is deterministic."""

    def frames() -> Iterator[tuple]:
        read = 0
        try:
            for item in source():
                read += 1
                yield item
        except VideoDecodeError as exc:
            if read == 0:
                raise
            msg = f"decoding stopped early: {exc}"
            if msg not in warnings:
                warnings.append(msg)

    return frames


def monitored(source: FrameSource, monitor: Monitor) -> FrameSource:
    """``source`` whose every stream (one per pass) and frame is reported to ``monitor``, which
    may stop the analysis there (:class:`AnalysisCancelled`)."""

    def frames() -> Iterator[tuple]:
        monitor.pass_started()
        for item in source():
            monitor.check()
            yield item
            monitor.frame_decoded()

    return frames


# ----------------------------------------------------------------------------- state


@dataclass
class _Pending:
    """A face waiting for its generator batch."""

    frame: int
    slot: int  # position of this face's box in its frame's box list
    box: Any
    crop: np.ndarray
    track: int
    detection_pass: int  # 1: the configured thresholds, 2: the permissive second pass


@dataclass
class _InputState:
    """What one input accumulates while its frames stream through."""

    item: InputItem
    dir: str | None
    fps: float | None = None
    times: dict[int, float] = field(default_factory=dict)  # frame index -> its own time (s)
    frame_order: list[int] = field(default_factory=list)
    position: dict[int, int] = field(default_factory=dict)  # frame index -> position
    boxes: list[list[Any]] = field(default_factory=list)
    coverage: float | None = None  # share of sampled frames with a face (after the second pass)
    second_pass: bool = False
    faces: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    worst: list[tuple[float, int, np.ndarray, list[Any]]] = field(default_factory=list)
    pending_frames: dict[int, tuple[np.ndarray, float]] = field(default_factory=dict)  # thumb, scale
    warnings: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- the analyzer


class Analyzer:
    """Holds the loaded models so many inputs (or many ``analyze`` calls) share them.

    The config is validated and the generator's weights checked for NaN/inf before anything
    else happens (:class:`mrigan.config.ConfigError`, :class:`NonFiniteModelError`).
    """

    def __init__(self, generator: Any, detector: Any = None, config: AnalyzeConfig | None = None,
                 face_detector: Any = None) -> None:
        self.config = validate_config(config or AnalyzeConfig())
        self.device = resolve_device(self.config.device)
        # inference precision: auto is fp32 on every CPU (the same maps whatever its bf16)
        precision = resolve_precision(self.device, self.config.precision)
        self.generator_info = file_info(generator, generator)
        self.generator = load_generator(generator, str(self.device), precision,
                                        self.config.generator.backend)
        self.generator_info["backend"] = getattr(self.generator, "backend", "torch")
        self.generator_name = describe_model(self.generator, generator)
        check_finite_weights(self.generator, self.generator_name)
        self.generator_info["image_size"] = int(self.generator.image_size)
        card = generator_card(self.generator)  # null verdict values: the card's, else defaults
        self.config, self.generator_info["verdict_from"] = resolve_verdict(
            self.config, card, detector is not None)
        self.generator_info["card"] = card_info(card, detector is not None)
        self.detector = None
        self.detector_info = None
        self.detector_name = "detector"
        if detector is not None:
            self.detector = load_detector(detector, str(self.device), precision)
            self.detector_name = describe_model(self.detector, detector)
            check_finite_weights(self.detector, self.detector_name)
            self.detector_info = file_info(detector, self.detector)
        self.compute = compute_record(self.device, **{
            name: str(getattr(model, "precision", precision))
            for name, model in (("generator", self.generator), ("detector", self.detector))
            if model is not None})
        fc = self.config.faces
        # crops at the generator's input size; "auto" detection device: the analysis' device
        self.face_config = replace(fc, size=int(self.generator.image_size),
                                   device=str(self.device) if fc.device == "auto" else fc.device)
        # loaded on the first frame that needs it (the second-pass detector only if a video needs it)
        self.face_detector = (face_detector if isinstance(face_detector, Detectors)
                              else Detectors(self.face_config, first=face_detector))

    # -- public

    def run(self, paths: Iterable[str | os.PathLike], out_dir: str | os.PathLike | None = None,
            progress: bool | Monitor = False,
            on_input: Callable[[InputResult], None] | None = None,
            *, replace: bool = False) -> AnalysisResults:
        """Analyse every input; with ``out_dir``, results.json is rewritten after each input.
        ``progress``: True for a progress bar, or a :class:`Monitor` that follows the run and
        may cancel it (:class:`AnalysisCancelled`).

        The output folder has one writer (``mrigan.outputs.BatchRun``: a second run into it is
        refused) and may not hold an earlier analysis unless ``replace`` (the earlier run's
        files are removed first). Until the last input is done, results.json says
        ``"complete": false`` and lists what is not analysed yet, so a run cut short (Ctrl-C,
        SIGTERM, a kill, a full disk, a cancel) is never mistaken for a finished one.
        """
        monitor = progress if isinstance(progress, Monitor) else (
            TqdmMonitor() if progress else Monitor())
        paths = list(paths)
        if not paths:
            raise AnalyzeError("no input given")
        out = check_output_dir(out_dir, paths) if out_dir is not None else None
        items = discover_inputs(paths)
        if out is not None and not replace:
            check_earlier_run(out, replace=False)  # before the folder is made
        created = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        results: list[InputResult] = []

        def snapshot(stopped: str | None = None) -> AnalysisResults:
            rest = tuple(str(i.path) for i in items[len(results):])
            return AnalysisResults(inputs=tuple(results), generator=self.generator_info,
                                   detector=self.detector_info, config=self.config,
                                   created=created, out_dir=str(out) if out else None,
                                   compute=self.compute, complete=not rest,
                                   not_analysed=rest, stopped=stopped)

        batch = (BatchRun(out, "analyze", [str(i.path) for i in items]) if out is not None
                 else contextlib.nullcontext())
        with batch:
            if out is not None:  # again (or, with replace, first), now that the folder is ours
                check_earlier_run(out, replace=replace)
                batch.plan(batch.todo)  # the marker, anew (replace removed an earlier one)
            try:
                for i, item in enumerate(items, 1):
                    monitor.check()
                    r = self._run_one(item, input_slug(item.path, i) if out else None, out,
                                      monitor, (i, len(items)))
                    results.append(r)
                    if out is not None:
                        write_progress(snapshot(), out)
                        batch.done(str(item.path))
                    if on_input:
                        on_input(r)
            except BaseException as exc:  # cut short: say so in results.json, then stop
                if out is not None and not isinstance(exc, OSError):
                    with contextlib.suppress(OSError):
                        write_progress(snapshot(stop_reason(exc)), out)
                raise
            res = snapshot()
            if out is not None:
                write_outputs(res, out)
        return res

    # -- one input

    def _run_one(self, item: InputItem, slug: str | None, out: Path | None, monitor: Monitor,
                 position: tuple[int, int] = (1, 1)) -> InputResult:
        base = {"path": str(item.path), "kind": "image" if item.kind == "image" else "video"}
        if item.kind == "missing":
            return InputResult(**base, status="missing", reason="no such file or folder")
        if item.kind == "empty":
            return InputResult(**base, status="missing",
                               reason="folder holds no image or video file (by suffix)")
        if item.kind == "special":  # never opened: a FIFO would block, /dev/zero never end
            return InputResult(**base, status="unreadable",
                               reason="not a regular file (a FIFO, device or socket)")
        try:
            sha = sha256_file(item.path)
            source, meta = open_input(item, self.config.frames)
            if item.kind == "video" and self.config.frames.decode_once:
                source = decoded_once(source, DECODE_ONCE_BYTES)
            state = _InputState(item=item, dir=slug, fps=meta.pop("fps", None),
                                times=meta.pop("frame_times", {}),
                                warnings=list(meta.pop("notes", ())))
            monitor.input_started(*position, item.path, meta.pop("sampled_frames", None))
            self._stream(monitored(source, monitor), state, out, monitor)
            if not state.faces:
                return InputResult(**base, status="no_face", dir=None, sha256=sha, fps=state.fps,
                                   frames_read=len(state.frame_order),
                                   face_coverage=state.coverage, second_pass=state.second_pass,
                                   reason=f"no face found in {len(state.frame_order)} frame(s)",
                                   warnings=tuple(state.warnings), **meta)
            return self._finish(state, base, sha, meta, out)
        except (VideoDecodeError, ImageReadError) as exc:
            return InputResult(**base, status="unreadable", reason=str(exc))
        except FaceSkipError as exc:  # a frame too small for MTCNN: no face can be found
            return InputResult(**base, status="no_face", reason=exc.problem)
        except OSError as exc:
            return InputResult(**base, status="unreadable", reason=f"{item.path}: {exc}")
        except AnalysisCancelled:
            raise  # the caller's decision, not a problem of this input
        except NonFiniteModelError as exc:  # a model's output, not the input: reported, no verdict
            return InputResult(**base, status="error", reason=exc.one_line())
        except Exception as exc:  # noqa: BLE001 - one bad input must not end a batch; it is reported
            if out is not None:
                append_error_log(out, item.path, traceback.format_exc())
            return InputResult(**base, status="error", reason=f"{type(exc).__name__}: {exc}")

    def _stream(self, source: FrameSource, state: _InputState, out: Path | None,
                monitor: Monitor) -> None:
        """Faces and tracks of every sampled frame (``face_crops``: the shared face-track
        iterator), scored in batches of ``batch_size`` as the crop pass streams."""
        cfg = self.config
        pending: list[_Pending] = []
        found = face_crops(tolerant(source, state.warnings), self.face_detector, self.face_config,
                           cfg.faces.max_faces_per_frame)
        try:
            for tf in found:
                index, boxes = tf.index, [f.box for f in tf.faces]
                state.coverage, state.second_pass = tf.coverage, tf.second_pass
                state.position[index] = len(state.frame_order)
                state.frame_order.append(index)
                state.boxes.append(boxes)
                if boxes and out is not None:  # report pictures only when a report is written
                    state.pending_frames[index] = _thumbnail(tf.frame, cfg.report.thumbnail_side)
                pending.extend(_Pending(index, slot, f.box, f.crop, f.track, f.detection_pass)
                               for slot, f in enumerate(tf.faces))
                monitor.frame_done(len(tf.faces))
                if len(pending) >= cfg.batch_size:
                    self._score(pending, state, out)
                    pending = []
        finally:
            monitor.frames_finished()
        if pending:
            self._score(pending, state, out)

    def _score(self, pending: list[_Pending], state: _InputState, out: Path | None) -> None:
        """Generator (and detector) on a batch of faces; record stats, write files."""
        crops = [p.crop for p in pending]
        # one stacked uint8 batch: a single conversion instead of one per face (same values)
        mris = as_mri_array(self.generator.predict(np.stack(crops)), len(crops),
                            self.generator_name)
        probs = cams = None
        if self.detector is not None:
            probs = fake_probabilities(self.detector, crops, mris, self.detector_name)
            rc = self.config.report
            if out is not None and rc.explain != "lime":  # LIME: shown faces only, in _finish
                cams = explanation_overlays(self.detector, crops, mris, rc.explain, rc.lime)
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
                    kind = self.config.report.explain  # files key and name: gradcam | lime
                    files[kind] = f"{stem}_{kind}.png"
                    atomic_save_image(out / files[kind], cams[k])
            state.faces[(p.frame, p.slot)] = {
                "box": p.box, "stats": stats, "prob": prob, "score": float(score), "files": files,
                "track": p.track, "pass": p.detection_pass}
        if out is not None:
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

    def _explain_shown(self, state: _InputState, out: Path) -> None:
        """LIME (``report.lime.n_samples`` detector passes per face) for the faces the report
        shows only - the ``report.worst_k`` highest face scores, in the report's order - not for
        every face of a long video. Crops are read back from their lossless PNGs."""
        rc = self.config.report
        keys = [(index, slot) for index in state.frame_order
                for slot in range(len(state.boxes[state.position[index]]))]
        shown = sorted(keys, key=lambda k: state.faces[k]["score"], reverse=True)[:rc.worst_k]
        if not shown:
            return
        crops = [read_image(out / state.faces[k]["files"]["face"]) for k in shown]
        mris = as_mri_array(self.generator.predict(np.stack(crops)), len(crops),
                            self.generator_name)
        maps = explanation_overlays(self.detector, crops, mris, "lime", rc.lime)
        if maps is None:  # a detector LIME cannot explain (clip model)
            return
        for key, drawn in zip(shown, maps, strict=True):
            files = state.faces[key]["files"]
            files["lime"] = files["face"].removesuffix("_face.png") + "_lime.png"
            atomic_save_image(out / files["lime"], drawn)

    def _finish(self, state: _InputState, base: dict[str, Any], sha: str, meta: dict[str, Any],
                out: Path | None) -> InputResult:
        """Per-frame/per-track results (tracks from the face-track iterator), the verdict, the
        timeline."""
        cfg = self.config
        track_of = {key: f["track"] for key, f in state.faces.items()}
        n_tracks = max(track_of.values()) + 1
        thumbs: dict[int, str] = {}
        if out is not None:
            move_into_tracks(state.faces, track_of, out, state.dir or "")
            for _score, index, thumb, _boxes in state.worst:
                rel = f"{state.dir}/frames/frame_{index:06d}.jpg"
                atomic_save_image(out / rel, thumb)
                thumbs[index] = rel
            if self.detector is not None and cfg.report.explain == "lime":
                self._explain_shown(state, out)
        frames = []
        for pos, index in enumerate(state.frame_order):
            faces = []
            for slot in range(len(state.boxes[pos])):
                f = state.faces[(index, slot)]
                b = f["box"]
                faces.append(FaceResult(
                    frame=index, track=track_of[(index, slot)],
                    box=(round(b.x0, 2), round(b.y0, 2), round(b.x1, 2), round(b.y1, 2)),
                    detection_score=float(b.score), detection_pass=f["pass"], mri=f["stats"],
                    fake_probability=f["prob"], score=f["score"], files=f["files"]))
            time = state.times.get(index, index / state.fps if state.fps else None)
            frames.append(FrameResult(index=index, time=time, faces=tuple(faces),
                                      thumbnail=thumbs.get(index)))
        all_faces = [f for fr in frames for f in fr.faces]
        track_results = []
        for t in range(n_tracks):
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
            timeline_png(out / timeline,
                         [{"frame": f.frame, "track": f.track, "mri_mean": f.mri["mean"],
                           "fake_probability": f.fake_probability} for f in all_faces],
                         threshold=verdict.thresholds.get("threshold"), score_source=source,
                         fps=_constant_rate(state), title=f"{printable(state.item.path.name)}: {verdict.label.upper()}")
        return InputResult(**base, status="analysed", dir=state.dir, sha256=sha, fps=state.fps,
                           frames_read=len(state.frame_order), faces=len(all_faces),
                           frames=tuple(frames), tracks=tuple(track_results), verdict=verdict,
                           timeline=timeline, warnings=tuple(state.warnings),
                           face_coverage=state.coverage, second_pass=state.second_pass, **meta)


def _constant_rate(state: _InputState) -> float | None:
    """The input's fps when every frame's own time is ``index / fps`` (within half a frame),
    else None: a variable-frame-rate timeline gets no seconds axis rather than a wrong one."""
    fps = state.fps
    if not fps or any(abs(t - i / fps) > 0.5 / fps for i, t in state.times.items()):
        return None
    return fps


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
