"""Following faces between detections: MTCNN on a small crop around the last detected box.

With ``detect_every`` k > 1 and ``detect_between: follow`` (the MRI-DF build's default), MTCNN
runs on the whole frame only on every k-th sampled frame (the *anchors*). On each frame in
between, every face of the anchor is looked for again in a square of ``FOLLOW_CONTEXT`` times
the anchor box's side around it, resized to ``FOLLOW_SIDE`` pixels: the full MTCNN cascade on a
96x96 image (all crops of a chunk in one batch) instead of on a 960-pixel frame. The face found
there that overlaps the anchor box most is mapped back to frame pixels. A frame where a face
is lost (nothing overlapping in its crop) is detected on the whole frame instead.

Why: holding the anchor's boxes drifts when the head moves (worst-frame IoU 0.46 with
per-frame detection on the FF++ sample at k=3); following keeps boxes near per-frame MTCNN
(measured on the three FF++ originals, every 10th frame, k=3: mean IoU 0.92, worst 0.86 --
per-frame MTCNN at max_side 640 vs 960 differs from itself by a worst 0.89) at about a sixth
of a whole-frame detection's cost (0.017 vs 0.108 CPU-seconds per frame, one thread).
Departs from the paper (MTCNN on every sampled frame): a face that appears between two anchors
is found at the next anchor, and boxes carry the follower's MTCNN score.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import cv2
import numpy as np

from datasets_builders.face_boxes import FaceBox, iou

#: side of the square searched around an anchor box, in box sides
FOLLOW_CONTEXT = 2.0
#: that square is resized to this many pixels before MTCNN (the face is ~48 px there)
FOLLOW_SIDE = 96
#: crops per MTCNN call
FOLLOW_BATCH = 32


def follow_settings() -> dict:
    """What followed boxes depend on (for the box-cache key)."""
    return {"context": FOLLOW_CONTEXT, "side": FOLLOW_SIDE}


def follow_crop(frame: np.ndarray, box: FaceBox) -> tuple[np.ndarray, tuple[int, int, float]]:
    """The ``FOLLOW_SIDE`` square crop around ``box`` (black outside the frame) and the map back
    to frame pixels ``(x0, y0, scale)``: frame = (x0, y0) + crop * scale."""
    side = max(1, int(round(FOLLOW_CONTEXT * max(box.width, box.height))))
    cx, cy = (box.x0 + box.x1) / 2.0, (box.y0 + box.y1) / 2.0
    x0, y0 = int(round(cx - side / 2.0)), int(round(cy - side / 2.0))
    h, w = frame.shape[:2]
    crop = np.zeros((side, side, 3), np.uint8)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
    if sx1 > sx0 and sy1 > sy0:
        crop[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = frame[sy0:sy1, sx0:sx1]
    interp = cv2.INTER_AREA if side > FOLLOW_SIDE else cv2.INTER_LINEAR
    return cv2.resize(crop, (FOLLOW_SIDE, FOLLOW_SIDE), interpolation=interp), (x0, y0, side / FOLLOW_SIDE)


def follow_boxes(detector, frames: Sequence[np.ndarray],
                 anchors: Sequence[Sequence[FaceBox]]) -> list[list[FaceBox] | None]:
    """Per frame, each anchor box followed into that frame (anchor order), or None when one of
    them was lost. ``detector``: a ``faces.FaceDetector`` (its nets and thresholds)."""
    jobs = [(f, a) for f, boxes in enumerate(anchors) for a in boxes]
    found: list[list[FaceBox | None]] = [[] for _ in frames]
    # the face is ~FOLLOW_SIDE / FOLLOW_CONTEXT px in the crop; look down to half that
    min_size = max(12.0, FOLLOW_SIDE / FOLLOW_CONTEXT / 2.0)
    for start in range(0, len(jobs), FOLLOW_BATCH):
        part = jobs[start:start + FOLLOW_BATCH]
        crops = [follow_crop(frames[f], a) for f, a in part]
        raw = detector.run_raw(np.stack([c for c, _ in crops]), min_size)
        for (f, anchor), (_c, (x0, y0, scale)), arr in zip(part, crops, raw, strict=True):
            cands = [FaceBox.from_list(FaceBox(x0 + r[0] * scale, y0 + r[1] * scale, x0 + r[2] * scale,
                                               y0 + r[3] * scale, float(r[4])).to_list()) for r in arr]
            cands = [c for c in cands if min(c.width, c.height) >= detector.min_face_size]
            best = max(cands, key=lambda c: iou(c, anchor), default=None)
            found[f].append(best if best is not None and iou(best, anchor) > 0 else None)
    return [None if any(b is None for b in bs) else list(bs) for bs in found]


def detect_and_follow(frames: Iterable[tuple], detector, every: int
                      ) -> Iterator[tuple[int, list[FaceBox]]]:
    """``(index, boxes)`` of every frame of ``frames`` (``(index, frame, ...)``): whole-frame
    MTCNN on every ``every``-th, followed boxes on the others (see the module doc)."""
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    chunk: list[tuple[int, np.ndarray]] = []
    for item in frames:
        chunk.append((item[0], item[1]))
        if len(chunk) >= every * detector.batch_size:  # a multiple of every: anchors stay aligned
            yield from _chunk(chunk, detector, every)
            chunk = []
    if chunk:
        yield from _chunk(chunk, detector, every)


def _chunk(chunk: list[tuple[int, np.ndarray]], detector, every: int):
    anchor_boxes = detector.detect([f for _, f in chunk[::every]])
    boxes: list[list[FaceBox] | None] = [None] * len(chunk)
    between = []
    for pos in range(len(chunk)):
        anchor = anchor_boxes[pos // every]
        if pos % every == 0 or not anchor:
            boxes[pos] = list(anchor)  # an anchor, or nothing to follow (no face at the anchor)
        else:
            between.append(pos)
    followed = follow_boxes(detector, [chunk[p][1] for p in between],
                            [anchor_boxes[p // every] for p in between])
    lost = [p for p, got in zip(between, followed, strict=True) if got is None]
    for p, got in zip(between, followed, strict=True):
        if got is not None:
            boxes[p] = got
    if lost:
        for p, got in zip(lost, detector.detect([chunk[p][1] for p in lost]), strict=True):
            boxes[p] = list(got)
    for (index, _frame), b in zip(chunk, boxes, strict=True):
        yield index, b


__all__ = ["FOLLOW_CONTEXT", "FOLLOW_SIDE", "detect_and_follow", "follow_boxes", "follow_crop",
           "follow_settings"]
