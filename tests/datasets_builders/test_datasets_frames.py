"""Streaming decode of every Nth frame on the real FF++ sample, and unreadable input."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from datasets_builders.frames import VideoDecodeError, iter_frames, video_info


@pytest.fixture(scope="module")
def video(ffpp_root):
    return ffpp_root / "original_sequences/youtube/c23/videos/004.mp4"


def _opencv_frame(path, index):
    cap = cv2.VideoCapture(str(path))
    for _ in range(index):
        assert cap.grab()
    ok, frame = cap.read()
    cap.release()
    assert ok
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def test_every_nth_frame_matches_opencv(video):
    info = video_info(video)
    assert (info.width, info.height, info.frames) == (1280, 720, 309) and info.fps == 25.0
    got = list(iter_frames(video, every=100))
    assert [i for i, _ in got] == [0, 100, 200, 300]
    for index, frame in got[:2]:
        assert frame.dtype == np.uint8 and frame.shape == (720, 1280, 3)
        ref = _opencv_frame(video, index).astype(np.int16)
        # two decoders, two YUV->RGB conversions: tiny rounding differences only
        assert np.abs(frame.astype(np.int16) - ref).mean() < 2.0


def test_max_frames_caps_yielded_frames(video):
    assert [i for i, _ in iter_frames(video, every=7, max_frames=3)] == [0, 7, 14]


def test_unreadable_inputs_raise_with_the_path(tmp_path, video):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    with pytest.raises(VideoDecodeError) as err:
        iter_frames(text)
    assert err.value.path == str(text) and str(text) in str(err.value)
    with pytest.raises(VideoDecodeError, match="no such file"):
        iter_frames(tmp_path / "missing.mp4")
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(video.read_bytes()[:4000])
    with pytest.raises(VideoDecodeError):
        list(iter_frames(truncated, every=1))
    with pytest.raises(ValueError):
        iter_frames(video, every=0)
