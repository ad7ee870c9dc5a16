"""Face boxes, square crops around them, face tracks, and the per-video box cache (JSON).

Boxes are detected once, on the ORIGINAL video, and cached; every fake made from that original
is cropped with the same boxes, so real and fake crops are aligned pixel for pixel.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from datasets_builders.frames import frame_layout
from mrigan.fileio import atomic_write_json
from mrigan.media import is_image


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
                  meta: dict, passes: Sequence[Sequence[int]] | None = None) -> dict:
    data = {**meta, "frames": [int(i) for i in frame_indices],
            "boxes": [[b.to_list() for b in bs] for bs in boxes]}
    if passes is not None:
        data["passes"] = [[int(p) for p in ps] for ps in passes]
    return data


def boxes_from_json(data: dict) -> tuple[list[int], list[list[FaceBox]]]:
    frames = [int(i) for i in data["frames"]]
    boxes = [[FaceBox.from_list(v) for v in bs] for bs in data["boxes"]]
    if len(frames) != len(boxes):
        raise ValueError(f"box cache has {len(frames)} frames but {len(boxes)} box lists")
    return frames, boxes


def passes_from_json(data: dict, boxes: Sequence[Sequence[FaceBox]]) -> list[list[int]]:
    """Which detection pass found each cached box (1 for entries written before passes)."""
    passes = data.get("passes")
    if passes is None:
        return [[1] * len(bs) for bs in boxes]
    passes = [[int(p) for p in ps] for ps in passes]
    if [len(p) for p in passes] != [len(b) for b in boxes]:
        raise ValueError("box cache: passes do not match boxes")
    return passes


class BoxCache:
    """One JSON file per original video under ``folder``: its frame indices and boxes.

    An entry is used only when its ``key`` (video size, frame step, detector settings, and
    for a rotated or multi-stream video how its frames are read: ``frames.frame_layout``)
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
        key = {"video_name": Path(video).name, "video_bytes": st.st_size, "every": int(every),
               "max_frames": max_frames, "settings": settings}
        layout = {} if is_image(video) else frame_layout(video)
        if layout:  # only then: entries of upright single-stream videos stay valid
            key["frames"] = layout
        return key

    def load(self, video_id: str, key: dict) -> tuple[list[int], list[list[FaceBox]]] | None:
        hit = self.load_with_passes(video_id, key)
        return None if hit is None else hit[:2]

    def load_with_passes(self, video_id: str, key: dict
                         ) -> tuple[list[int], list[list[FaceBox]], list[list[int]]] | None:
        """Frame indices, boxes and the pass that found each box; None when absent or stale."""
        path = self.path(video_id)
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("key") != key:
                return None
            frames, boxes = boxes_from_json(data)
            return frames, boxes, passes_from_json(data, boxes)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # an unreadable or edited entry is not trusted: detect again and overwrite it
            warnings.warn(f"{path}: box cache entry ignored ({exc})", stacklevel=2)
            return None

    def save(self, video_id: str, key: dict, frame_indices: Sequence[int],
             boxes: Sequence[Sequence[FaceBox]], passes: Sequence[Sequence[int]] | None = None) -> Path:
        path = self.path(video_id)
        atomic_write_json(path, boxes_to_json(frame_indices, boxes, {"key": key}, passes), indent=None)
        return path
