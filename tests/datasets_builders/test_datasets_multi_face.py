"""The thesis' multi-face rule (optional): a video where more than 10% of the sampled frames
hold more than one face is discarded and counted as ``multi_face``, in the face-track layer
(so face sets and the MRI-DF builder both have it); today's tracking of every face stays the
default. The clips are composed from the shared FF++ media: two people side by side."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from datasets_builders.build_config import BuildConfig, BuildSourceConfig
from datasets_builders.build_faces import BuildFaceSetConfig, build_face_set
from datasets_builders.faces import (
    FaceDetectionConfig,
    FaceDetector,
    MultiFaceError,
    find_faces,
    iter_face_tracks,
)
from datasets_builders.frames import iter_frames
from datasets_builders.mri_df import build_mri_df
from mrigan.config import ConfigError
from mrigan.mri_df_format import read_manifest

FAST = FaceDetectionConfig(device="cpu", max_side=640, batch_size=5, size=64)
N = 10


@pytest.fixture(scope="module")
def detector():
    torch.set_num_threads(2)
    return FaceDetector(device="cpu", thresholds=FAST.thresholds, min_face_size=FAST.min_face_size,
                        max_side=FAST.max_side, batch_size=FAST.batch_size)


def _frames(path, n=N, every=7):
    return [f for _, f in iter_frames(path, every=every, max_frames=n)]


@pytest.fixture(scope="module")
def people(ffpp_root):
    """Frames of 519 (640x480), its Deepfakes fake, and 634 (shrunk to 640x360, padded to 480)."""
    orig = ffpp_root / "original_sequences" / "youtube" / "c23" / "videos"
    fake = ffpp_root / "manipulated_sequences" / "Deepfakes" / "c23" / "videos" / "519_515.mp4"
    other = []
    for f in _frames(orig / "634.mp4"):
        small = cv2.resize(f, (640, 360), interpolation=cv2.INTER_AREA)
        other.append(np.pad(small, ((60, 60), (0, 0), (0, 0)), constant_values=128))
    return {"a": _frames(orig / "519.mp4"), "a_fake": _frames(fake), "b": other}


def _compose(left, right, two_in):
    """Side by side; frames whose number is not in ``two_in`` get a plain grey right half."""
    grey = np.full_like(right[0], 128)
    return [np.concatenate([lf, rf if k in two_in else grey], axis=1)
            for k, (lf, rf) in enumerate(zip(left, right, strict=True))]


def _write_mp4(path, frames):
    h, w = frames[0].shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (w, h))
    assert vw.isOpened()
    for f in frames:
        vw.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    vw.release()
    return path


def _source(frames):
    return lambda: iter(enumerate(frames))


def test_rule_in_the_face_track_layer(people, detector):
    two_everywhere = _compose(people["a"], people["b"], range(N))
    found = find_faces(_source(two_everywhere), detector, FAST)
    assert all(len(b) == 2 for b in found.boxes) and found.multi_face_fraction == 1.0
    tracked = list(iter_face_tracks(_source(two_everywhere), detector, FAST, crops=False))
    assert {f.track for tf in tracked for f in tf.faces} == {0, 1}  # default: every face tracked
    strict = FaceDetectionConfig(**{**FAST.__dict__, "drop_multi_face": True})
    with pytest.raises(MultiFaceError, match="100% of 10 sampled frames") as info:
        next(iter_face_tracks(_source(two_everywhere), detector, strict))
    assert info.value.reason == "multi_face"
    # the thesis' 10%: one frame of ten with a second face is kept, two are not
    one = _compose(people["a"], people["b"], {3})
    two = _compose(people["a"], people["b"], {3, 7})
    assert find_faces(_source(one), detector, FAST).multi_face_fraction == pytest.approx(0.1)
    assert len(list(iter_face_tracks(_source(one), detector, strict, crops=False))) == N
    with pytest.raises(MultiFaceError):
        list(iter_face_tracks(_source(two), detector, strict, crops=False))
    looser = FaceDetectionConfig(**{**strict.__dict__, "multi_face_fraction": 0.25})
    assert len(list(iter_face_tracks(_source(two), detector, looser, crops=False))) == N
    with pytest.raises(ConfigError, match="multi_face_fraction"):
        FaceDetectionConfig(multi_face_fraction=1.5)


def test_builders_skip_and_count_multi_face_videos(people, detector, tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    _write_mp4(clips / "two.mp4", _compose(people["a"], people["b"], range(N)))
    _write_mp4(clips / "two_fake.mp4", _compose(people["a_fake"], people["b"], range(N)))
    _write_mp4(clips / "one.mp4", _compose(people["a"], people["b"], ()))
    listing = tmp_path / "faces.csv"
    listing.write_text("path,label\nclips/two_fake.mp4,fake\nclips/one.mp4,real\n")
    strict = FaceDetectionConfig(**{**FAST.__dict__, "drop_multi_face": True})

    def face_set(faces, name):
        cfg = BuildFaceSetConfig(out=str(tmp_path / name), sources=(BuildSourceConfig(root=str(listing)),),
                            every=3, max_frames=3, faces=faces, progress=False)
        return build_face_set(cfg, log=lambda _l: None, detector=detector), tmp_path / name

    summary, out = face_set(strict, "strict")
    assert summary.skipped == {"multi_face": 1}
    assert {r["video"] for r in read_manifest(out, require_mri=False)} == {"csv/clips/one"}
    summary, out = face_set(FAST, "default")
    rows = read_manifest(out, require_mri=False)
    assert summary.skipped == {} and {r["track"] for r in rows if r["video"] == "csv/clips/two_fake"} == {"0", "1"}

    pairs = tmp_path / "pairs.csv"
    pairs.write_text("path,label,original\nclips/two_fake.mp4,fake,clips/two.mp4\n")

    def mri_df(faces, name):
        cfg = BuildConfig(out=str(tmp_path / name), sources=(BuildSourceConfig(root=str(pairs)),),
                          every=3, max_frames=3, faces=faces, progress=False)
        return build_mri_df(cfg, log=lambda _l: None, detector=detector), tmp_path / name

    summary, out = mri_df(strict, "mri_strict")
    assert summary.skipped == {"multi_face": 1} and summary.pairs_written == 0
    summary, out = mri_df(FAST, "mri_default")
    assert summary.skipped == {} and {r["track"] for r in read_manifest(out)} == {"0", "1"}
