"""Faces in videos: face detectors by name, face tracks, and THE face-track iterator.

``iter_face_tracks`` is the one "detect -> boxes -> tracks -> crops" loop of the project (the
MRI-DF builder, face sets, realism clips, the analyst pipeline and the demo use it), and
``FaceDetectionConfig`` is the one place for face-detection defaults. (Over 400 lines: the
detector, its settings and the one iterator belong together; the box/track helpers already
live in ``face_boxes``.)

Boxes are detected once, on the ORIGINAL video, and cached as JSON; every fake made from that
original is cropped with the same boxes. Real and fake crops are therefore aligned pixel for
pixel and their SSIM map shows the manipulation, not a one-pixel detector jitter (the original
MRI-GAN code detected faces separately in fake and original).

Face recall (departs from the paper, which runs one pass at 0.85/0.95/0.95): on dark or
low-contrast video the paper's thresholds find faces in few frames. When the share of sampled
frames with a face (``coverage``) is under ``second_pass_below``, a second pass with permissive
thresholds (``second_pass_thresholds``, default 0.6/0.7/0.7) runs on the frames without a face;
every face records which pass found it.

Face detectors (``FACE_DETECTORS``, ``faces.detector_name``): ``mtcnn`` (the paper's, facenet-pytorch;
the default everywhere) and ``blazeface`` (MediaPipe's full-range BlazeFace, optional extra
``mrigan[blazeface]``, ``face_blazeface``). ``faces.threads`` runs MTCNN with that many torch
threads (restored afterwards): its many small tensors run faster on one thread on a shared
2-core machine than on two (``bench/analyze.py``); the boxes do not change.

Between detections (``detect_every`` > 1): boxes are held, or with ``between="follow"``
followed in small crops around the last detected ones (``face_follow``).

Multi-face rule (thesis 002, section 4.1.2, optional, off by default): a video where more than
``multi_face_fraction`` (thesis: 10%) of the detected frames hold more than one face is
discarded (``MultiFaceError``; builders count it as the skip reason ``multi_face``): in such
videos one cannot tell which face was manipulated. Today's tracking of every face stays the
default (``drop_multi_face: false``). The thesis counts frames with "a probable second face" of
its SSD detector; here a second face is a second MTCNN box above the configured thresholds.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from datasets_builders.face_blazeface import (
    BOX_SCALE,
    BOX_SHIFT,
    MIN_SCORE,
    MODEL_FILE,
    PERMISSIVE_SCORE,
    BlazeFaceDetector,
)
from datasets_builders.face_boxes import (
    BoxCache,
    FaceBox,
    FaceTracker,
    boxes_from_json,
    boxes_to_json,
    crop_face,
    iou,
    passes_from_json,
    square_box,
    track_faces,
)
from datasets_builders.face_follow import detect_and_follow
from datasets_builders.mtcnn_cascade import detect_faces
from mrigan.config import Checked, ConfigError, bounds
from mrigan.device import resolve_device
from mrigan.errors import MriganError
from mrigan.fingerprint import added_later, runtime
from mrigan.registry import Registry

#: face detectors by name (``faces.detector_name``): factory(config, second_pass) -> detector with
#: ``detect(frames)``, ``run_raw(images, min_size)``, ``settings()``, ``batch_size``,
#: ``min_face_size``
FACE_DETECTORS = Registry("face detector")

#: what frames between two detections (``detect_every`` > 1) get: the last detected boxes, or
#: the faces followed in small crops around them (``face_follow``)
BETWEEN = ("hold", "follow")
#: MTCNN stage thresholds of the paper's code (P-Net, R-Net, O-Net).
PAPER_THRESHOLDS = (0.85, 0.95, 0.95)


MTCNN_FACTOR = 0.709  # MTCNN's image pyramid step
#: the most pixels (after ``max_side``) MTCNN detects in one call: 32 frames of 960x540 (a
#: frame's boxes do not depend on how many frames share its call: ``test_mtcnn_cascade``)
MAX_BATCH_PIXELS = 32 * 960 * 540
#: permissive thresholds of the second detection pass (face recall on dark / low-contrast video)
PERMISSIVE_THRESHOLDS = (0.6, 0.7, 0.7)
#: the second-pass coverage fraction used where recall matters more than precision (analysis
#: of a suspect video, labelled face sets): under half the sampled frames with a face
RECALL_SECOND_PASS_BELOW = 0.5
#: the thesis' multiple_face_threshold: share of frames with a second face that discards a video
MULTI_FACE_FRACTION = 0.1


@dataclass(frozen=True)
class FaceCrop(Checked):
    """The size of the frames faces are detected on and of the crops: a section of
    :class:`FaceDetectionConfig`, and of the benchmark's ``data`` (flat keys in both)."""

    #: detect on frames downscaled to this longer side (None: full size)
    max_side: int | None = field(default=960, metadata=bounds(minimum=32))
    #: crop side (paper: 256); >= 16 pixels because SSIM uses an 11-pixel window
    size: int = field(default=256, metadata=bounds(minimum=16))


@dataclass(frozen=True)
class FaceDetectionConfig(FaceCrop):
    """Face detection, tracking and cropping: the one set of defaults (YAML section ``faces``).

    ``max_side`` 960: a 1080p face is found at this size and MTCNN's cost grows with pixels.
    Ranges are ``bounds`` metadata (checked from YAML and when built directly); the
    three-number thresholds are checked in ``__post_init__``.
    """

    device: str = field(default="auto", metadata=runtime())
    thresholds: tuple[float, float, float] = PAPER_THRESHOLDS
    min_face_size: int = field(default=40, metadata=bounds(minimum=1))  # full-frame pixels
    batch_size: int = field(default=8, metadata=runtime())  # >= 1: the named rule
    #: crop side = margin * max(box w, box h)
    margin: float = field(default=1.3, metadata=bounds(exclusive_minimum=0.0))
    #: face tracks across sampled frames
    iou_threshold: float = field(default=0.3, metadata=bounds(minimum=0.0, maximum=1.0))
    # second pass for videos whose coverage is under this fraction. 0 (off) by default: in
    # training data a permissive detector's false faces (it finds "faces" in plain masks) do
    # more harm than missed frames; analysis and face sets turn it on (RECALL_SECOND_PASS_BELOW)
    second_pass_below: float = field(default=0.0, metadata=bounds(minimum=0.0, maximum=1.0))
    second_pass_thresholds: tuple[float, float, float] = PERMISSIVE_THRESHOLDS
    # the thesis' multi-face rule (see the module doc): off by default, 0.1 as in the thesis
    drop_multi_face: bool = field(default=False, metadata=added_later(False))
    multi_face_fraction: float = field(default=MULTI_FACE_FRACTION, metadata={
        **bounds(minimum=0.0, exclusive_maximum=1.0), **added_later(MULTI_FACE_FRACTION)})
    #: which detector (a name of ``FACE_DETECTORS``): mtcnn (the paper's) | blazeface
    detector_name: str = field(default="mtcnn", metadata={
        **bounds(registry=FACE_DETECTORS), **added_later("mtcnn")})
    #: blazeface only: score threshold of the first pass and of the permissive second pass
    #: (``thresholds`` are MTCNN's three stage thresholds)
    min_score: float = field(default=MIN_SCORE, metadata={
        **bounds(exclusive_minimum=0.0, exclusive_maximum=1.0), **added_later(MIN_SCORE)})
    second_pass_min_score: float = field(default=PERMISSIVE_SCORE, metadata={
        **bounds(exclusive_minimum=0.0, exclusive_maximum=1.0), **added_later(PERMISSIVE_SCORE)})
    #: torch threads while MTCNN runs (None: torch's setting as it is); same boxes either way
    threads: int | None = field(default=None, metadata={**bounds(minimum=1), **runtime()})

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("thresholds", "second_pass_thresholds"):
            t = getattr(self, key)
            if len(t) != 3 or not all(0.0 < float(v) < 1.0 for v in t):
                raise ConfigError(f"faces.{key} must be three numbers in (0, 1), got {t!r}")

    def detector(self, *, second_pass: bool = False) -> FaceDetector | BlazeFaceDetector:
        """A loaded ``faces.detector_name`` detector with these settings (the permissive one
        for ``second_pass``)."""
        return FACE_DETECTORS.build(self.detector_name, self, second_pass)

    def cache_settings(self) -> dict:
        """What boxes depend on (the box-cache key), without loading the detector."""
        if self.detector_name == "mtcnn":  # the key MTCNN caches always had
            first = detector_settings(self.thresholds, self.min_face_size, self.max_side)
            permissive = [float(t) for t in self.second_pass_thresholds]
        else:
            first = CACHE_SETTINGS[self.detector_name](self)
            permissive = float(self.second_pass_min_score)
        if self.second_pass_below > 0:
            first["second_pass"] = {"below": self.second_pass_below, "thresholds": permissive}
        return first


def detector_settings(thresholds: Sequence[float], min_face_size: int, max_side: int | None,
                      factor: float = MTCNN_FACTOR) -> dict:
    """The detector settings boxes depend on (the box cache key), without loading MTCNN."""
    return {"detector": "mtcnn", "thresholds": [float(t) for t in thresholds],
            "min_face_size": int(min_face_size), "max_side": max_side, "factor": float(factor)}


class FaceDetector:
    """Batched MTCNN (facenet-pytorch) with the paper's thresholds (``FACE_DETECTORS["mtcnn"]``).

    ``max_side`` downscales frames whose longer side exceeds it before detection (boxes are
    mapped back to full-resolution pixels): MTCNN's cost grows with the pixel count, and a
    1080p DFDC face is large enough to be found at 640 px. ``min_face_size`` is in full-frame
    pixels; smaller detections are dropped. Frames of one size are detected in batches of
    ``batch_size`` (and at most ``MAX_BATCH_PIXELS`` pixels). ``threads``: torch threads while it runs (None: as they are).
    """

    def __init__(self, device: str = "auto", thresholds: Sequence[float] = PAPER_THRESHOLDS,
                 min_face_size: int = 40, max_side: int | None = None, batch_size: int = 16,
                 factor: float = MTCNN_FACTOR, threads: int | None = None) -> None:
        from facenet_pytorch import MTCNN

        if len(thresholds) != 3 or not all(0.0 < t < 1.0 for t in thresholds):
            raise ValueError(f"thresholds must be three numbers in (0, 1), got {thresholds!r}")
        if max_side is not None and max_side < 32:
            raise ValueError(f"max_side must be >= 32 pixels, got {max_side}")
        self.device = resolve_device(device)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.min_face_size = int(min_face_size)
        self.max_side = max_side
        self.batch_size = max(1, int(batch_size))
        self.factor = float(factor)
        self.threads = threads
        self._mtcnn = MTCNN(keep_all=True, thresholds=list(self.thresholds),
                            min_face_size=self.min_face_size, factor=self.factor, device=self.device)
        self._mtcnn.eval()

    def settings(self) -> dict:
        """What the boxes depend on; stored in the box cache to invalidate stale entries."""
        return detector_settings(self.thresholds, self.min_face_size, self.max_side, self.factor)

    def _scale_for(self, shape: tuple[int, ...]) -> float:
        longest = max(shape[:2])
        if self.max_side is None or longest <= self.max_side:
            return 1.0
        return self.max_side / longest

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[FaceBox]]:
        """Boxes per frame (RGB uint8 HxWx3), best score first, in full-frame pixels."""
        out: list[list[FaceBox] | None] = [None] * len(frames)
        by_shape: dict[tuple, list[int]] = {}
        for i, f in enumerate(frames):
            if f.ndim != 3 or f.shape[2] != 3 or f.dtype != np.uint8:
                raise ValueError(f"frame {i}: expected RGB uint8 HxWx3, got {f.shape} {f.dtype}")
            by_shape.setdefault(f.shape, []).append(i)
        with torch_threads(self.threads):
            for shape, idx in by_shape.items():
                scale = self._scale_for(shape)
                # at most MAX_BATCH_PIXELS detected pixels per call (memory of 4K frames)
                step = max(1, min(self.batch_size,
                                  MAX_BATCH_PIXELS // max(1, round(shape[0] * scale)
                                                          * round(shape[1] * scale))))
                for start in range(0, len(idx), step):
                    chunk = idx[start:start + step]
                    for i, boxes in zip(chunk, self._detect_batch([frames[i] for i in chunk],
                                                                  scale), strict=True):
                        out[i] = boxes
        return [b if b is not None else [] for b in out]

    def run_mtcnn(self, images: np.ndarray, min_size: float) -> list[np.ndarray]:
        """The MTCNN cascade on a stack of same-size RGB images (NxHxWx3 uint8): per image an
        ``(n, 5)`` array of boxes in that image's pixels and scores (no filtering). It is
        facenet-pytorch's ``detect_face`` with the resizing done from integral images
        (``mtcnn_cascade``: the same boxes bit for bit, about half the time on a CPU)."""
        import torch

        with torch.no_grad():  # facenet's detect_face, resampling exactly from integral images
            return detect_faces(np.asarray(images), min_size, self._mtcnn.pnet,
                                self._mtcnn.rnet, self._mtcnn.onet, list(self.thresholds),
                                self.factor, self.device)

    def run_raw(self, images: np.ndarray, min_size: float) -> list[np.ndarray]:
        """``run_mtcnn`` under ``threads`` (the detectors' common name, used by ``face_follow``)."""
        with torch_threads(self.threads):
            return self.run_mtcnn(images, min_size)

    def _detect_batch(self, frames: list[np.ndarray], scale: float) -> list[list[FaceBox]]:
        full_h, full_w = frames[0].shape[:2]
        if scale != 1.0:
            size = (max(1, round(full_w * scale)), max(1, round(full_h * scale)))
            frames = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames]
            scale = size[0] / full_w  # the scale actually applied
        min_size = max(12.0, self.min_face_size * scale)  # MTCNN's smallest pyramid face
        if min(frames[0].shape[:2]) < min_size:  # no pyramid level fits: MTCNN cannot run
            raise FrameTooSmallError(f"image too small for face detection ({full_w}x{full_h}; "
                                     f"faces of at least {self.min_face_size} px are looked "
                                     "for)")
        results = []
        for arr in self.run_mtcnn(np.stack(frames), min_size):
            # rounded as in the box cache, so fresh and cached boxes crop identically
            found = [FaceBox.from_list(FaceBox(*(float(v) for v in arr[k, :4] / scale),
                                               float(arr[k, 4])).to_list())
                     for k in range(len(arr))]
            found = [b for b in found if min(b.width, b.height) >= self.min_face_size]
            results.append(sorted(found, key=lambda b: -b.score))
        return results


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``threads`` inside the block (None: unchanged)."""
    import torch

    before = torch.get_num_threads()
    if threads is None or threads == before:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _mtcnn(config: FaceDetectionConfig, second_pass: bool) -> FaceDetector:
    return FaceDetector(device=config.device, min_face_size=config.min_face_size,
                        max_side=config.max_side, batch_size=config.batch_size,
                        thresholds=config.second_pass_thresholds if second_pass
                        else config.thresholds, threads=config.threads)


def _blazeface(config: FaceDetectionConfig, second_pass: bool) -> BlazeFaceDetector:
    return BlazeFaceDetector(min_score=config.second_pass_min_score if second_pass
                             else config.min_score, min_face_size=config.min_face_size,
                             batch_size=config.batch_size, threads=config.threads)


def _blazeface_settings(config: FaceDetectionConfig) -> dict:
    """BlazeFace's box-cache key (its ``settings()``) without loading it."""
    return {"detector": "blazeface", "model": MODEL_FILE, "min_score": float(config.min_score),
            "min_face_size": int(config.min_face_size), "box_scale": BOX_SCALE,
            "box_shift": BOX_SHIFT}



FACE_DETECTORS.register("mtcnn", _mtcnn)
FACE_DETECTORS.register("blazeface", _blazeface)
#: a registered detector's box-cache key from the config alone (MTCNN's: ``detector_settings``)
CACHE_SETTINGS = {"blazeface": _blazeface_settings}


# ----------------------------------------------------------------------- the face-track iterator


class NoFaceError(MriganError, ValueError):
    """No face found in a video or image (names the file)."""


class FaceSkipError(MriganError, ValueError):
    """A video or image its reader skips and counts under ``reason`` (builders' skip reason,
    analyze's ``no_face`` status with the message as its reason)."""

    reason = "no face found"


class FrameTooSmallError(FaceSkipError):
    """A frame smaller than the smallest face MTCNN looks for (a 17x9 image or video, 1x1,
    60000x2): said so, rather than the cascade's empty ``torch.cat``."""

    reason = "too small for face detection"


class MultiFaceError(FaceSkipError):
    """A video discarded by the multi-face rule (``faces.drop_multi_face``); builders count it
    as the skip reason ``multi_face``."""

    reason = "multi_face"

    def __init__(self, fraction: float, limit: float, frames: int, path=None) -> None:
        self.fraction, self.limit, self.frames = fraction, limit, frames
        super().__init__(f"{fraction:.0%} of {frames} sampled frames hold more than one face "
                         f"(limit {limit:.0%})", path)


class Detectors:
    """The first-pass and (lazily) the second-pass detector of one ``FaceDetectionConfig``;
    nothing is loaded until a frame needs detecting (a build served from the box cache never
    loads MTCNN)."""

    def __init__(self, config: FaceDetectionConfig, first: FaceDetector | None = None,
                 second: FaceDetector | None = None) -> None:
        self.config = config
        self._first, self._second = first, second

    @property
    def first(self) -> FaceDetector:
        if self._first is None:
            self._first = self.config.detector()
        return self._first

    @property
    def second(self) -> FaceDetector:
        if self._second is None:
            self._second = self.config.detector(second_pass=True)
        return self._second

    def cache_settings(self) -> dict:
        settings = self.config.cache_settings()
        if self._first is not None:  # a detector given by the caller: its own settings count
            settings.update(self._first.settings())
        return settings


@dataclass(frozen=True)
class TrackedFace:
    track: int  # face track id within the video (0, 1, ... by first appearance)
    box: FaceBox  # in frame pixels
    detection_pass: int  # 1: found with the configured thresholds, 2: by the permissive pass
    crop: np.ndarray | None  # size x size RGB uint8 (None when crops were not asked for)


@dataclass(frozen=True)
class TrackedFrame:
    index: int  # frame index in the video
    frame: np.ndarray
    faces: tuple[TrackedFace, ...]
    payload: Any  # whatever the caller's frame source carried beside the frame (e.g. fakes)
    coverage: float  # share of the video's detected frames with a face (video-level)
    second_pass: bool  # whether the second pass ran on this video


@dataclass(frozen=True)
class VideoFaces:
    """Detection result of one video: per detected frame its index, boxes and passes."""

    indices: tuple[int, ...]
    boxes: tuple[tuple[FaceBox, ...], ...]
    passes: tuple[tuple[int, ...], ...]
    second_pass: bool
    from_cache: bool

    @property
    def coverage(self) -> float:
        return sum(bool(b) for b in self.boxes) / len(self.boxes) if self.boxes else 0.0

    @property
    def multi_face_fraction(self) -> float:
        """Share of the detected frames holding more than one face."""
        return sum(len(b) > 1 for b in self.boxes) / len(self.boxes) if self.boxes else 0.0


def check_multi_face(faces: VideoFaces, config: FaceDetectionConfig, path=None) -> None:
    """Raise ``MultiFaceError`` when ``config.drop_multi_face`` is on and more than
    ``config.multi_face_fraction`` of the frames hold more than one face (the thesis' rule)."""
    if config.drop_multi_face and faces.multi_face_fraction > config.multi_face_fraction:
        raise MultiFaceError(faces.multi_face_fraction, config.multi_face_fraction,
                             len(faces.boxes), path)


FrameSource = Callable[[], Iterable[tuple]]


def _as_detectors(detector: Detectors | FaceDetector | None, config: FaceDetectionConfig) -> Detectors:
    if isinstance(detector, Detectors):
        return detector
    return Detectors(config, first=detector)


def _detect_all(frames: Iterable[tuple], detector: FaceDetector, wanted=None):
    """(index, boxes) of each frame of ``frames`` (``wanted``: only these indices), batched."""
    batch: list[tuple[int, np.ndarray]] = []
    for item in frames:
        index, frame = item[0], item[1]
        if wanted is not None and index not in wanted:
            continue
        batch.append((index, frame))
        if len(batch) >= detector.batch_size:
            yield from zip((i for i, _ in batch), detector.detect([f for _, f in batch]), strict=True)
            batch = []
    if batch:
        yield from zip((i for i, _ in batch), detector.detect([f for _, f in batch]), strict=True)


def find_faces(frames: FrameSource, detector: Detectors | FaceDetector | None = None,
               config: FaceDetectionConfig | None = None, *, cache: BoxCache | None = None,
               cache_id: str | None = None, cache_key: dict | None = None,
               follow_every: int = 1) -> VideoFaces:
    """Boxes of every frame ``frames()`` yields (``(index, frame, ...)``), via the box cache.

    ``follow_every`` k > 1: whole-frame MTCNN on every k-th frame only, the faces followed in
    small crops on the frames in between (``face_follow``; the cache key must say so).

    ``frames`` is called once per pass (a video is decoded again for the second pass rather
    than held in memory). The second pass runs only on frames without a face, only when the
    first pass's coverage is under ``config.second_pass_below``.
    """
    config = config or FaceDetectionConfig()
    dets = _as_detectors(detector, config)
    if cache is not None:
        if cache_id is None or cache_key is None:
            raise ValueError("a box cache needs cache_id and cache_key")
        hit = cache.load_with_passes(cache_id, cache_key)
        if hit is not None:
            idx, boxes, passes = hit
            return VideoFaces(tuple(idx), tuple(map(tuple, boxes)), tuple(map(tuple, passes)),
                              any(2 in p for p in passes) or _needs_second(boxes, config), True)
    if follow_every > 1:
        found = list(detect_and_follow(frames(), dets.first, follow_every))
    else:
        found = list(_detect_all(frames(), dets.first))
    indices = [i for i, _ in found]
    boxes = [list(b) for _, b in found]
    passes = [[1] * len(b) for b in boxes]
    second = _needs_second(boxes, config)
    if second:
        missed = {i for i, b in zip(indices, boxes, strict=True) if not b}
        pos = {i: k for k, i in enumerate(indices)}
        for index, more in _detect_all(frames(), dets.second, wanted=missed):
            boxes[pos[index]] = list(more)
            passes[pos[index]] = [2] * len(more)
    if cache is not None:
        cache.save(cache_id, cache_key, indices, boxes, passes)
    return VideoFaces(tuple(indices), tuple(map(tuple, boxes)), tuple(map(tuple, passes)), second, False)


def _needs_second(boxes: Sequence[Sequence[FaceBox]], config: FaceDetectionConfig) -> bool:
    if not boxes or config.second_pass_below <= 0:
        return False
    return sum(bool(b) for b in boxes) / len(boxes) < config.second_pass_below


def iter_face_tracks(frames: FrameSource, detector: Detectors | FaceDetector | None = None,
                     config: FaceDetectionConfig | None = None, *, cache: BoxCache | None = None,
                     cache_id: str | None = None, cache_key: dict | None = None,
                     crop_frames: FrameSource | None = None, detect_every: int = 1,
                     crops: bool = True, margin: float | None = None,
                     whole_frame: bool = False, between: str = "hold") -> Iterator[TrackedFrame]:
    """THE face-track loop: detect -> boxes -> tracks -> crops, one ``TrackedFrame`` per frame.

    ``frames()`` yields ``(index, frame)`` or ``(index, frame, payload)``; detection runs on every
    ``detect_every``-th of them (frames in between reuse the last detected boxes and track ids:
    faces move little in a fraction of a second and MTCNN dominates the cost); with
    ``between="follow"`` the frames in between get their faces followed in small crops around
    the last detected boxes instead (``face_follow``: near per-frame MTCNN where held boxes
    drift). Boxes come from
    ``cache`` when ``cache_key`` matches (see ``BoxCache``), else are detected and saved.
    ``crop_frames()`` (default ``frames``) is what is tracked and cropped: the builder detects
    on the original alone and crops the original with its fakes in lockstep (payload). Crops
    are ``config.size`` squares of ``margin`` (default ``config.margin``) times the box.
    ``whole_frame``: no detection, the whole frame is the face (folders of face crops).
    With ``config.drop_multi_face`` a video failing the multi-face rule raises
    ``MultiFaceError`` before its first frame is yielded.
    """
    config = config or FaceDetectionConfig()
    if detect_every < 1:
        raise ValueError(f"detect_every must be >= 1, got {detect_every}")
    if between not in BETWEEN:
        raise ValueError(f"between must be one of {BETWEEN}, got {between!r}")
    follow = between == "follow" and detect_every > 1
    margin = config.margin if margin is None else margin
    if whole_frame:
        faces = None
    else:
        def probed() -> Iterator[tuple]:
            return (item for pos, item in enumerate(frames())
                    if follow or pos % detect_every == 0)

        faces = find_faces(probed, detector, config, cache=cache, cache_id=cache_id,
                           cache_key=cache_key, follow_every=detect_every if follow else 1)
        check_multi_face(faces, config)
        by_index = {i: (b, p) for i, b, p in zip(faces.indices, faces.boxes, faces.passes, strict=True)}
    tracker = FaceTracker(config.iou_threshold)
    current: tuple[tuple[FaceBox, ...], tuple[int, ...], list[int]] = ((), (), [])
    for item in (crop_frames or frames)():
        index, frame = item[0], item[1]
        payload = item[2] if len(item) > 2 else None
        if whole_frame:
            h, w = frame.shape[:2]
            boxes, passes = (FaceBox(0.0, 0.0, float(w), float(h), 1.0),), (1,)
            current = (boxes, passes, tracker.update(boxes))
            coverage, second = 1.0, False
        else:
            if index in by_index:
                boxes, passes = by_index[index]
                current = (boxes, passes, tracker.update(boxes))
            coverage, second = faces.coverage, faces.second_pass
        boxes, passes, ids = current
        tracked = tuple(
            TrackedFace(t, b, p, crop_face(frame, b, margin=margin, size=config.size) if crops else None)
            for t, b, p in zip(ids, boxes, passes, strict=True))
        yield TrackedFrame(index, frame, tracked, payload, coverage, second)


__all__ = ["FACE_DETECTORS", "BlazeFaceDetector", "torch_threads", "BETWEEN", "MULTI_FACE_FRACTION", "MultiFaceError", "check_multi_face", "NoFaceError", "FaceBox", "FaceDetector", "FaceDetectionConfig", "FaceTracker", "BoxCache", "Detectors",
           "TrackedFace", "TrackedFrame", "VideoFaces", "crop_face", "square_box", "track_faces",
           "find_faces", "iter_face_tracks", "iou", "boxes_from_json", "boxes_to_json",
           "passes_from_json", "PAPER_THRESHOLDS", "PERMISSIVE_THRESHOLDS", "RECALL_SECOND_PASS_BELOW", "detector_settings"]
