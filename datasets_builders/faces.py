"""Face boxes (MTCNN), face tracks across frames, square crops, and the per-video box cache.

Boxes are detected once, on the ORIGINAL video, and cached as JSON; every fake made from that
original is cropped with the same boxes. Real and fake crops are therefore aligned pixel for
pixel and their SSIM map shows the manipulation, not a one-pixel detector jitter (the original
MRI-GAN code detected faces separately in fake and original).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from datasets_builders.frames import iter_frames
from mrigan.device import resolve_device
from mrigan.fileio import atomic_write_json

#: MTCNN stage thresholds of the paper's code (P-Net, R-Net, O-Net).
PAPER_THRESHOLDS = (0.85, 0.95, 0.95)


@dataclass(frozen=True)
class FaceBox:
    """A face box in frame pixels (x0, y0) top-left, (x1, y1) bottom-right; detector score."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float = 1.0

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    def scaled(self, factor: float) -> FaceBox:
        return FaceBox(self.x0 * factor, self.y0 * factor, self.x1 * factor, self.y1 * factor, self.score)

    def to_list(self) -> list[float]:
        return [round(float(v), 3) for v in (self.x0, self.y0, self.x1, self.y1)] + [
            round(float(self.score), 5)]

    @classmethod
    def from_list(cls, values: Sequence[float]) -> FaceBox:
        if len(values) not in (4, 5):
            raise ValueError(f"a face box needs 4 or 5 numbers, got {values!r}")
        return cls(*(float(v) for v in values))


def iou(a: FaceBox, b: FaceBox) -> float:
    ix = max(0.0, min(a.x1, b.x1) - max(a.x0, b.x0))
    iy = max(0.0, min(a.y1, b.y1) - max(a.y0, b.y0))
    inter = ix * iy
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


MTCNN_FACTOR = 0.709  # MTCNN's image pyramid step


def detector_settings(thresholds: Sequence[float], min_face_size: int, max_side: int | None,
                      factor: float = MTCNN_FACTOR) -> dict:
    """The detector settings boxes depend on (the box cache key), without loading MTCNN."""
    return {"detector": "mtcnn", "thresholds": [float(t) for t in thresholds],
            "min_face_size": int(min_face_size), "max_side": max_side, "factor": float(factor)}


class FaceDetector:
    """Batched MTCNN (facenet-pytorch) with the paper's thresholds.

    ``max_side`` downscales frames whose longer side exceeds it before detection (boxes are
    mapped back to full-resolution pixels): MTCNN's cost grows with the pixel count, and a
    1080p DFDC face is large enough to be found at 640 px. ``min_face_size`` is in full-frame
    pixels; smaller detections are dropped. Frames of one size are detected in batches of
    ``batch_size``.
    """

    def __init__(self, device: str = "auto", thresholds: Sequence[float] = PAPER_THRESHOLDS,
                 min_face_size: int = 40, max_side: int | None = None, batch_size: int = 16,
                 factor: float = MTCNN_FACTOR) -> None:
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
        for shape, idx in by_shape.items():
            scale = self._scale_for(shape)
            for start in range(0, len(idx), self.batch_size):
                chunk = idx[start:start + self.batch_size]
                for i, boxes in zip(chunk, self._detect_batch([frames[i] for i in chunk], scale),
                                    strict=True):
                    out[i] = boxes
        return [b if b is not None else [] for b in out]

    def _detect_batch(self, frames: list[np.ndarray], scale: float) -> list[list[FaceBox]]:
        import torch
        from facenet_pytorch.models.utils.detect_face import detect_face

        if scale != 1.0:
            h, w = frames[0].shape[:2]
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            frames = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames]
            scale = size[0] / w  # the scale actually applied
        batch = torch.from_numpy(np.stack(frames)).to(self.device)
        min_size = max(12.0, self.min_face_size * scale)  # MTCNN's smallest pyramid face
        with torch.no_grad():
            batch_boxes, _ = detect_face(batch, min_size, self._mtcnn.pnet, self._mtcnn.rnet,
                                         self._mtcnn.onet, list(self.thresholds), self.factor,
                                         self.device)
        results = []
        for boxes in batch_boxes:
            arr = np.asarray(boxes, dtype=np.float64).reshape(-1, 5)  # facenet returns object arrays
            # rounded as in the box cache, so fresh and cached boxes crop identically
            found = [FaceBox.from_list(FaceBox(*(float(v) for v in arr[k, :4] / scale),
                                               float(arr[k, 4])).to_list())
                     for k in range(len(arr))]
            found = [b for b in found if min(b.width, b.height) >= self.min_face_size]
            results.append(sorted(found, key=lambda b: -b.score))
        return results


def square_box(box: FaceBox, margin: float = 1.3) -> tuple[int, int, int, int]:
    """The integer square ``(x0, y0, x1, y1)`` of side ``margin * max(w, h)`` on the box centre.

    Integer pixels so a fake and its original are cut at exactly the same place.
    """
    if margin <= 0:
        raise ValueError(f"margin must be > 0, got {margin}")
    cx, cy = (box.x0 + box.x1) / 2.0, (box.y0 + box.y1) / 2.0
    side = max(1, int(round(max(box.width, box.height) * margin)))
    x0 = int(math.floor(cx - side / 2.0 + 0.5))
    y0 = int(math.floor(cy - side / 2.0 + 0.5))
    return x0, y0, x0 + side, y0 + side


def crop_face(frame: np.ndarray, box: FaceBox, margin: float = 1.3, size: int = 256) -> np.ndarray:
    """Square crop around ``box`` (scaled by ``margin``), black-padded at the frame borders,
    resized to ``size`` x ``size`` (area interpolation when shrinking)."""
    h, w = frame.shape[:2]
    x0, y0, x1, y1 = square_box(box, margin)
    side = x1 - x0
    crop = np.zeros((side, side) + frame.shape[2:], dtype=frame.dtype)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if sx1 > sx0 and sy1 > sy0:
        crop[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = frame[sy0:sy1, sx0:sx1]
    if side == size:
        return crop
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(crop, (size, size), interpolation=interp)


class FaceTracker:
    """Online IoU tracker: feed the boxes of each sampled frame in order, get track ids.

    Each box joins the track whose last box overlaps it most (IoU >= ``iou_threshold``); a
    track takes at most one box per frame; unmatched boxes start new tracks (ids 0, 1, ... in
    order of creation). ``max_gap`` (in positions) retires a track not seen for that long.
    Online, so the builder can crop frame by frame without holding a whole video.
    """

    def __init__(self, iou_threshold: float = 0.3, max_gap: int | None = None) -> None:
        self.iou_threshold = iou_threshold
        self.max_gap = max_gap
        self._last: list[tuple[int, FaceBox]] = []  # per track id: (position, last box)
        self._pos = -1

    def update(self, boxes: Sequence[FaceBox]) -> list[int]:
        """Track id of each box of the next frame, in the order of ``boxes``."""
        self._pos += 1
        pos = self._pos
        candidates = []
        for t, (last_pos, last) in enumerate(self._last):
            if self.max_gap is not None and pos - last_pos > self.max_gap:
                continue
            for b, box in enumerate(boxes):
                overlap = iou(last, box)
                if overlap >= self.iou_threshold:
                    candidates.append((-overlap, t, b))
        ids: list[int | None] = [None] * len(boxes)
        used_t: set[int] = set()
        for _neg, t, b in sorted(candidates):
            if t in used_t or ids[b] is not None:
                continue
            ids[b] = t
            used_t.add(t)
        for b, box in enumerate(boxes):
            if ids[b] is None:
                ids[b] = len(self._last)
                self._last.append((pos, box))
            else:
                self._last[ids[b]] = (pos, box)
        return [int(i) for i in ids]


def track_faces(boxes_per_frame: Sequence[Sequence[FaceBox]], iou_threshold: float = 0.3,
                max_gap: int | None = None) -> list[list[tuple[int, FaceBox]]]:
    """Group boxes into per-person tracks: ``[[(frame_pos, box), ...], ...]``.

    ``frame_pos`` is the position in ``boxes_per_frame`` (not the video frame number). Tracks
    are ordered by first appearance; see ``FaceTracker`` for the matching rule.
    """
    tracker = FaceTracker(iou_threshold, max_gap)
    tracks: list[list[tuple[int, FaceBox]]] = []
    for pos, boxes in enumerate(boxes_per_frame):
        for t, box in zip(tracker.update(boxes), boxes, strict=True):
            if t == len(tracks):
                tracks.append([])
            tracks[t].append((pos, box))
    return tracks


# ------------------------------------------------------------------------------ box cache


def boxes_to_json(frame_indices: Sequence[int], boxes: Sequence[Sequence[FaceBox]],
                  meta: dict) -> dict:
    return {**meta, "frames": [int(i) for i in frame_indices],
            "boxes": [[b.to_list() for b in bs] for bs in boxes]}


def boxes_from_json(data: dict) -> tuple[list[int], list[list[FaceBox]]]:
    frames = [int(i) for i in data["frames"]]
    boxes = [[FaceBox.from_list(v) for v in bs] for bs in data["boxes"]]
    if len(frames) != len(boxes):
        raise ValueError(f"box cache has {len(frames)} frames but {len(boxes)} box lists")
    return frames, boxes


class BoxCache:
    """One JSON file per original video under ``folder``: its frame indices and boxes.

    An entry is used only when its ``key`` (video size, frame step, detector settings)
    matches, so changing the thresholds or ``every`` never silently reuses stale boxes.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)

    def path(self, video_id: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in video_id)
        return self.folder / f"{safe}.json"

    @staticmethod
    def key(video: str | os.PathLike, every: int, max_frames: int | None, settings: dict) -> dict:
        st = os.stat(video)
        return {"video_name": Path(video).name, "video_bytes": st.st_size, "every": int(every),
                "max_frames": max_frames, "settings": settings}

    def load(self, video_id: str, key: dict) -> tuple[list[int], list[list[FaceBox]]] | None:
        import json

        path = self.path(video_id)
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None  # unreadable cache entry: detect again and overwrite it
        if data.get("key") != key:
            return None
        return boxes_from_json(data)

    def save(self, video_id: str, key: dict, frame_indices: Sequence[int],
             boxes: Sequence[Sequence[FaceBox]]) -> Path:
        path = self.path(video_id)
        atomic_write_json(path, boxes_to_json(frame_indices, boxes, {"key": key}), indent=None)
        return path


def detect_video(detector: FaceDetector, video: str | os.PathLike, *, every: int = 10,
                 max_frames: int | None = None, cache: BoxCache | None = None,
                 video_id: str | None = None) -> tuple[list[int], list[list[FaceBox]]]:
    """Frame indices and boxes of every ``every``-th frame of ``video``, via the cache."""

    video_id = video_id or Path(video).stem
    key = BoxCache.key(video, every, max_frames, detector.settings()) if cache else None
    if cache is not None:
        hit = cache.load(video_id, key)
        if hit is not None:
            return hit
    indices: list[int] = []
    boxes: list[list[FaceBox]] = []
    batch: list[np.ndarray] = []
    for index, frame in iter_frames(video, every=every, max_frames=max_frames):
        indices.append(index)
        batch.append(frame)
        if len(batch) == detector.batch_size:
            boxes.extend(detector.detect(batch))
            batch = []
    if batch:
        boxes.extend(detector.detect(batch))
    if cache is not None:
        cache.save(video_id, key, indices, boxes)
    return indices, boxes


__all__ = ["FaceBox", "FaceDetector", "FaceTracker", "BoxCache", "crop_face", "square_box", "track_faces",
           "detect_video", "iou", "PAPER_THRESHOLDS"]
