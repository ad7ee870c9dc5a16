"""The exact MTCNN cascade (``mtcnn_cascade``) against facenet-pytorch's own ``detect_face``, the
reference it replaces: its resampling equals ``interpolate(mode="area")`` bit for bit, and its
boxes and scores equal ``detect_face``'s on batches of real FF++ frames (both thresholds,
downscaled 720p and full 480p, a dark frame that finds few faces)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from facenet_pytorch.models.utils.detect_face import detect_face
from torch.nn.functional import interpolate

from datasets_builders.faces import PERMISSIVE_THRESHOLDS, FaceDetector
from datasets_builders.frames import iter_frames
from datasets_builders.mtcnn_cascade import area_resize, detect_faces, integral_images


@pytest.fixture(scope="module")
def frames(ffpp_root):
    """Two same-size batches: 480p FF++ frames, and 720p frames downscaled as the detector
    does (max_side 960), one of them darkened."""
    small = [f for _, f in iter_frames(ffpp_root / "original_sequences/youtube/c23/videos/519.mp4",
                                       every=60, max_frames=4)]
    big = [cv2.resize(f, (960, 540), interpolation=cv2.INTER_AREA) for _, f in iter_frames(
        ffpp_root / "manipulated_sequences/FaceSwap/c23/videos/634_660.mp4", every=60,
        max_frames=3)]
    big[1] = (big[1] * 0.25).astype(np.uint8)
    return np.stack(small), np.stack(big)


@pytest.fixture(scope="module")
def mtcnn():
    return FaceDetector(device="cpu")._mtcnn


def test_area_resize_equals_torch_area_interpolation_bit_for_bit(frames):
    batch = frames[1]
    integral = integral_images(batch)
    as_torch = torch.from_numpy(batch).permute(0, 3, 1, 2).float()
    n, h, w = batch.shape[:3]
    zeros = np.zeros(n, np.int64)
    for out_h, out_w in ((163, 289), (12, 21), (540, 960), (700, 1000)):  # down, same, up
        got = area_resize(integral, np.arange(n), zeros, zeros, np.full(n, h), np.full(n, w),
                          out_h, out_w)
        want = interpolate(as_torch, size=(out_h, out_w), mode="area")
        assert torch.equal(torch.from_numpy(got).permute(0, 3, 1, 2), want)
    rng = np.random.default_rng(0)  # boxes of every size, as R-Net / O-Net crop them
    y0, x0 = rng.integers(0, 400, 50), rng.integers(0, 800, 50)
    y1, x1 = y0 + rng.integers(1, 140, 50), x0 + rng.integers(1, 160, 50)
    frame = rng.integers(0, n, 50)
    got = area_resize(integral, frame, y0, x0, y1, x1, 24, 24)
    for k in range(50):
        want = interpolate(as_torch[frame[k]:frame[k] + 1, :, y0[k]:y1[k], x0[k]:x1[k]],
                           size=(24, 24), mode="area")
        assert torch.equal(torch.from_numpy(got[k:k + 1]).permute(0, 3, 1, 2), want)


@pytest.mark.parametrize("thresholds", [(0.85, 0.95, 0.95), PERMISSIVE_THRESHOLDS])
def test_boxes_equal_facenet_detect_face(frames, mtcnn, thresholds):
    found = 0
    for batch, min_size in ((frames[0], 40.0), (frames[1], 30.0)):
        with torch.no_grad():
            want, _ = detect_face(torch.from_numpy(batch), min_size, mtcnn.pnet, mtcnn.rnet,
                                  mtcnn.onet, list(thresholds), 0.709, "cpu")
            got = detect_faces(batch, min_size, mtcnn.pnet, mtcnn.rnet, mtcnn.onet,
                               list(thresholds), 0.709, "cpu")
        assert len(got) == len(want) == len(batch)
        for g, w in zip(got, want, strict=True):
            w = np.asarray(w, dtype=np.float64).reshape(-1, 5)
            np.testing.assert_array_equal(g, w)  # same count, order, boxes and scores
            found += len(g)
    assert found >= len(frames[0]) + len(frames[1]) - 1  # faces were found (the dark one may not)


def test_a_frames_boxes_do_not_depend_on_how_many_frames_share_its_call(ffpp_root):
    """The analysis detects 32 frames per MTCNN call (``faces.batch_size``), the builders 8: every
    frame's boxes and scores are the same bit for bit. One frame alone (a video's last one) may
    move a coordinate by one float32 step (oneDNN picks another kernel for a batch of 1 or 2)."""
    frames = [f for _, f in iter_frames(
        ffpp_root / "original_sequences/youtube/c23/videos/519.mp4", every=25, max_frames=12)]
    by = {n: FaceDetector(device="cpu", batch_size=n) for n in (1, 4, 8, 32)}
    stack = np.stack(frames)
    whole = by[32].run_mtcnn(stack, 40.0)
    assert sum(len(b) for b in whole) >= len(frames)
    for n in (1, 4, 8):
        parts = [b for i in range(0, len(frames), n) for b in by[n].run_mtcnn(stack[i:i + n], 40.0)]
        for got, want in zip(parts, whole, strict=True):
            if n == 1:
                assert got.shape == want.shape
                np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)  # pixels; scores
            else:
                np.testing.assert_array_equal(got, want)
    assert ([[b.to_list() for b in f] for f in by[32].detect(frames)]
            == [[b.to_list() for b in f] for f in by[8].detect(frames)])
