"""MTCNN boxes on real frames, square crops, tracks, and the per-video box cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from datasets_builders.faces import (
    BoxCache,
    FaceBox,
    FaceDetectionConfig,
    FaceDetector,
    crop_face,
    find_faces,
    iou,
    square_box,
    track_faces,
)
from datasets_builders.frames import iter_frames
from mrigan.fileio import read_image


@pytest.fixture(scope="module")
def detector():
    torch.set_num_threads(2)
    return FaceDetector(device="cpu", max_side=480, batch_size=4)


def test_detects_the_manipulated_face_in_ff_example(detector, ff_examples):
    frame = read_image(ff_examples / "ex_original.png")
    mask = read_image(ff_examples / "ex_deepfakes_mask.png")[..., 0] > 127
    boxes = detector.detect([frame])[0]
    assert len(boxes) >= 1 and boxes[0].score >= 0.95
    b = boxes[0]
    ys, xs = np.nonzero(mask)
    mask_box = FaceBox(xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    assert iou(b, mask_box) > 0.4  # the detected face is where the deepfake changed pixels
    full = FaceDetector(device="cpu", max_side=None).detect([frame])[0][0]
    assert iou(b, full) > 0.85  # detecting on a downscaled frame finds the same face


def test_crop_face_equals_numpy_slice_and_pads_at_borders():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, size=(100, 120, 3), dtype=np.uint8)
    box = FaceBox(40, 30, 60, 50)
    x0, y0, x1, y1 = square_box(box, margin=1.5)
    assert (x1 - x0, y1 - y0) == (30, 30) and (x0, y0) == (35, 25)
    np.testing.assert_array_equal(crop_face(frame, box, margin=1.5, size=30), frame[25:55, 35:65])
    corner = crop_face(frame, FaceBox(-10, -10, 10, 10), margin=1.0, size=20)
    assert corner[:10].max() == 0 and corner[:, :10].max() == 0
    np.testing.assert_array_equal(corner[10:, 10:], frame[:10, :10])
    assert crop_face(frame, box, size=64).shape == (64, 64, 3)


def test_track_faces_keeps_two_people_apart():
    left = [FaceBox(10 + k, 10, 50 + k, 50) for k in range(4)]
    right = [FaceBox(200 - k, 12, 240 - k, 52) for k in range(4)]
    frames = [[left[0], right[0]], [right[1], left[1]], [left[2]], [right[3], left[3]]]
    tracks = track_faces(frames, iou_threshold=0.3)
    assert len(tracks) == 2
    assert [p for p, _ in tracks[0]] == [0, 1, 2, 3] and [b for _, b in tracks[0]] == left
    assert [p for p, _ in tracks[1]] == [0, 1, 3] and [b for _, b in tracks[1]] == right[:2] + [right[3]]
    assert len(track_faces(frames, iou_threshold=0.3, max_gap=1)) == 3  # right restarts after a gap


def test_box_cache_reuses_and_invalidates(detector, ffpp_root, tmp_path):
    video = ffpp_root / "original_sequences/youtube/c23/videos/519.mp4"
    cache = BoxCache(tmp_path / "boxes")
    config = FaceDetectionConfig(device="cpu", max_side=480, batch_size=4)
    key = BoxCache.key(video, 250, None, detector.settings())

    def detect():
        found = find_faces(lambda: iter_frames(video, every=250), detector, config, cache=cache,
                           cache_id="519", cache_key=key)
        return found, (list(found.indices), [list(b) for b in found.boxes])

    first, (frames, boxes) = detect()
    assert frames == [0, 250, 500, 750] and all(len(b) >= 1 for b in boxes)
    assert not first.from_cache and not first.second_pass and first.coverage == 1.0
    entry = cache.path("519")
    stamp = entry.stat().st_mtime_ns
    second, again = detect()
    assert again == (frames, [[FaceBox.from_list(b.to_list()) for b in bs] for bs in boxes])
    assert second.from_cache and entry.stat().st_mtime_ns == stamp  # served from the cache
    key = BoxCache.key(video, 250, None, {**detector.settings(), "thresholds": [0.5, 0.5, 0.5]})
    assert cache.load("519", key) is None  # other detector settings: not reused
