"""Issue 25 family 1: how a video is stored must not change what is analysed. Real FF++ frames
are written (PyAV alone, under tmp_path) as a phone would store them - sideways with a display
rotation - with variable frame timing, and behind a small black first video stream; the one
frame reader (``datasets_builders.frames``) must give the upright frames, each frame's own time
and the main stream, so ``analyze`` (and build-dataset / build-faces / realism clips, which read
frames through it) see what a player shows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _gan_setup import write_tiny_generator
from _media import write_video

from datasets_builders.frames import iter_frames, iter_timed_frames, orient, video_info
from mrigan.app.cli import main as cli

pytestmark = pytest.mark.usefixtures("two_torch_threads")

TIMES = [0.0, 0.04, 1.0, 1.04, 5.0, 5.04]  # variable frame rate: gaps of 40 ms and 4 s


@pytest.fixture(scope="module")
def media(ffpp_root, tmp_path_factory):
    base = tmp_path_factory.mktemp("layout")
    src = ffpp_root / "original_sequences/youtube/c23/videos/519.mp4"
    frames = [f for _, f in iter_frames(src, every=25, max_frames=len(TIMES))]
    folder = base / "in"
    folder.mkdir()
    return {
        "base": base, "frames": frames,
        "upright": write_video(folder / "upright.mp4", frames),
        # the sensor's landscape picture of a portrait scene: stored turned 90 degrees
        # counter-clockwise, shown turned back 90 degrees clockwise (PyAV's -90)
        "phone": write_video(folder / "phone.mp4", [np.rot90(f, 1) for f in frames],
                             display_rotation=-90),
        "upside": write_video(folder / "upside.mp4", [np.rot90(f, 2) for f in frames],
                              display_rotation=180),
        "vfr": write_video(folder / "vfr.mp4", frames, times=TIMES),
        "two": write_video(folder / "two.mp4", frames, decoy=(64, 64)),
    }


def _close(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_frame_reader_shows_frames_upright_at_their_own_times_from_the_main_stream(media):
    frames = media["frames"]
    h, w = frames[0].shape[:2]
    upright = [f for _, f in iter_frames(media["upright"], every=1)]
    for name, rotation in (("phone", 90), ("upside", 180)):
        info = video_info(media[name])
        assert (info.width, info.height, info.rotation) == (w, h, rotation)
        got = [f for _, f in iter_frames(media[name], every=1)]
        assert len(got) == len(frames)
        for mine, ref in zip(got, upright, strict=True):
            assert _close(mine, ref) < 3.0  # codec noise only; sideways would not even match shape
        assert _close(np.rot90(got[0], 2), upright[0]) > 20  # the check can tell orientations
    timed = list(iter_timed_frames(media["vfr"], every=2))
    assert [(i, round(t, 3)) for i, t, _ in timed] == [(0, 0.0), (2, 1.0), (4, 5.0)]
    info = video_info(media["two"])
    assert (info.stream, info.video_streams, info.width, info.height) == (1, 2, w, h)
    assert "read stream #1" in info.notes[0]
    assert _close(next(iter_frames(media["two"]))[1], upright[0]) < 3.0


def test_orient_follows_every_display_matrix():
    img = np.arange(6).reshape(2, 3)
    assert (orient(img, (0, 1, -1, 0)) == np.rot90(img, -1)).all()  # 90 clockwise
    assert (orient(img, (0, -1, 1, 0)) == np.rot90(img, 1)).all()
    assert (orient(img, (-1, 0, 0, -1)) == np.rot90(img, 2)).all()
    assert (orient(img, (-1, 0, 0, 1)) == img[:, ::-1]).all()  # mirrored
    assert orient(img, None) is img


def test_analyze_reports_the_upright_size_true_times_and_stream(media):
    gen = write_tiny_generator(media["base"] / "gen.safetensors")
    out = media["base"] / "out"
    rc = cli(["analyze", str(media["upright"]), str(media["phone"]), str(media["vfr"]),
              str(media["two"]), "--generator", str(gen), "--out", str(out), "--every", "2",
              "--device", "cpu", "--no-progress"])
    assert rc == 0
    res = {e["path"].rsplit("/", 1)[1]: e for e in
           json.loads((out / "results.json").read_text())["inputs"]}
    ref = res["upright.mp4"]
    assert ref["status"] == "analysed" and ref["rotation"] == 0 and ref["video_stream"] == 0
    h, w = media["frames"][0].shape[:2]
    for name in ("phone.mp4", "two.mp4", "vfr.mp4"):
        e = res[name]
        assert e["status"] == "analysed", e
        assert (e["width"], e["height"]) == (w, h)
        assert e["faces"] == ref["faces"]
        for fr, fr_ref in zip(e["frames"], ref["frames"], strict=True):
            for face, face_ref in zip(fr["faces"], fr_ref["faces"], strict=True):
                assert np.allclose(face["box"], face_ref["box"], atol=6)
                assert abs(face["mri"]["mean"] - face_ref["mri"]["mean"]) < 0.02
    assert res["phone.mp4"]["rotation"] == 90
    assert any("display matrix" in x for x in res["phone.mp4"]["warnings"])
    assert res["two.mp4"]["video_stream"] == 1
    assert any("2 video streams" in x for x in res["two.mp4"]["warnings"])
    assert [round(f["time"], 3) for f in res["vfr.mp4"]["frames"]] == [0.0, 1.0, 5.0]
    assert [round(f["time"], 3) for f in ref["frames"]] == [0.0, 0.08, 0.16]


def test_build_faces_crops_a_phone_video_upright(media):
    """The builders read through the same reader: a face set of the sideways-stored video holds
    the same upright crops as the upright one's (and its box cache entry is its own)."""
    from datasets_builders.build_faces import BuildFaceSetConfig, build_face_set
    from datasets_builders.mri_df import BuildSourceConfig, FaceDetectionConfig
    from mrigan.fileio import read_image
    from mrigan.mri_df_format import read_manifest

    folder = media["base"] / "faces_in"
    folder.mkdir()
    csv = folder / "list.csv"
    csv.write_text(f"path,label\n{media['upright']},real\n{media['phone']},real\n")
    cfg = BuildFaceSetConfig(out=str(media["base"] / "faces"), sources=(BuildSourceConfig(
        kind="csv", root=str(csv)),), every=2, max_faces=3, progress=False,
        faces=FaceDetectionConfig(device="cpu", max_side=320, batch_size=4, size=64))
    build_face_set(cfg, log=lambda _l: None)
    rows = read_manifest(cfg.out, require_mri=False)
    crops = {}
    for r in rows:
        crops.setdefault(r["video"].rsplit("/", 1)[-1], []).append(read_image(Path(cfg.out) / r["image"]))
    assert sorted(crops) == ["phone", "upright"] and len(crops["phone"]) == len(crops["upright"])
    for mine, ref in zip(crops["phone"], crops["upright"], strict=True):
        # box jitter from codec noise shifts a crop by a pixel or two; a turned face is far off
        turned = min(_close(np.rot90(mine, k), ref) for k in (1, 2, 3))
        assert _close(mine, ref) < 0.35 * turned
