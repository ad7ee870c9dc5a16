"""Face recall on a real dark clip: the paper's thresholds miss the darkened frames, the
permissive second pass finds them, and both passes are recorded (iterator, rows, summary).

The clip: 8 frames of FF++ 634 (and of its FaceSwap fake), the first two as they are, the other
six at 10% brightness, written as MP4 into tmp_path.
"""

from __future__ import annotations

import pytest
import torch
from _media import darkened_clip

from datasets_builders.faces import (
    PERMISSIVE_THRESHOLDS,
    Detectors,
    FaceDetectionConfig,
    iter_face_tracks,
)
from datasets_builders.frames import iter_frames
from datasets_builders.mri_df import BuildConfig, BuildSourceConfig, build_mri_df
from mrigan.mri_df_format import read_manifest

GAINS = (1.0, 1.0, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1)
RECALL = FaceDetectionConfig(device="cpu", max_side=320, batch_size=8, size=64, second_pass_below=0.5)


@pytest.fixture(scope="module")
def dark(tmp_path_factory, ffpp_root):
    folder = tmp_path_factory.mktemp("dark_media")
    real = darkened_clip(ffpp_root / "original_sequences/youtube/c23/videos/634.mp4",
                         folder / "dark_634.mp4", GAINS)
    fake = darkened_clip(ffpp_root / "manipulated_sequences/FaceSwap/c23/videos/634_660.mp4",
                         folder / "dark_634_660.mp4", GAINS)
    return real, fake


@pytest.fixture(scope="module")
def detectors():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield RECALL.detector(), RECALL.detector(second_pass=True)
    torch.set_num_threads(threads)


def test_first_pass_misses_dark_frames_and_the_second_pass_finds_them(dark, detectors):
    first, second = detectors
    frames = [f for _, f in iter_frames(dark[0], every=1)]
    assert len(frames) == len(GAINS)
    assert [bool(b) for b in first.detect(frames)] == [True, True] + [False] * 6  # paper's thresholds
    assert second.thresholds == PERMISSIVE_THRESHOLDS
    tracked = list(iter_face_tracks(lambda: iter_frames(dark[0], every=1),
                                    Detectors(RECALL, first, second), RECALL))
    passes = [[f.detection_pass for f in tf.faces] for tf in tracked]
    assert passes[:2] == [[1], [1]]
    assert sum(p == [2] for p in passes[2:]) >= 5  # found by the second pass, recorded as such
    assert all(tf.second_pass for tf in tracked) and tracked[0].coverage >= 7 / 8
    assert all(tf.faces[0].crop.shape == (64, 64, 3) for tf in tracked if tf.faces)
    # off (the builder's default): the dark frames stay without a face, coverage says so
    off = FaceDetectionConfig(device="cpu", max_side=320, batch_size=8, size=64)
    plain = list(iter_face_tracks(lambda: iter_frames(dark[0], every=1), first, off))
    assert [len(tf.faces) for tf in plain] == [1, 1, 0, 0, 0, 0, 0, 0]
    assert plain[0].coverage == 0.25 and not plain[0].second_pass


def test_build_records_coverage_and_the_pass_of_every_face(dark, detectors, tmp_path):
    real, fake = dark
    media = real.parent
    csv = media / "dark.csv"
    csv.write_text(f"path,label,original\n{fake.name},fake,{real.name}\n")
    first, second = detectors
    out = tmp_path / "out"

    def build(faces):
        cfg = BuildConfig(out=str(out), every=1, progress=False, faces=faces,
                          sources=(BuildSourceConfig(kind="csv", root=str(csv)),))
        lines = []
        return build_mri_df(cfg, log=lines.append, detector=first, restart=True), lines

    summary, lines = build(RECALL)
    rows = read_manifest(out)
    assert {r["coverage"] for r in rows} == {str(summary.coverage["csv/dark_634"])}
    assert summary.coverage["csv/dark_634"] >= 7 / 8 and summary.second_pass_videos == 1
    for label in ("real", "fake"):
        by_frame = {int(r["frame"]): r["detection_pass"] for r in rows if r["label"] == label}
        assert by_frame[0] == by_frame[1] == "1"
        assert sum(by_frame.get(i) == "2" for i in range(2, 8)) >= 5
    assert summary.faces_second_pass == sum(r["detection_pass"] == "2" for r in rows) >= 10
    assert any(line.startswith("face coverage:") and "second pass on 1 videos" in line for line in lines)
    # without the second pass the build keeps only the bright frames and reports the low coverage
    plain, lines = build(FaceDetectionConfig(device="cpu", max_side=320, batch_size=8, size=64))
    assert plain.coverage == {"csv/dark_634": 0.25} and plain.second_pass_videos == 0
    assert sorted({int(r["frame"]) for r in read_manifest(out)}) == [0, 1]
    assert any("under 0.5: csv/dark_634" in line for line in lines)
