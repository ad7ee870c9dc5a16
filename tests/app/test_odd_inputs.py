"""Issue 25 families 6 and 7: odd inputs are named with what is odd about them. Inputs too
small for face detection are reported with their size (not as MTCNN's empty ``torch.cat``):
images cut from a real FaceForensics++ frame to 17x9, 1x1 and 60000x2 pixels, and a 17x9 video
of real frames. A FIFO and ``/dev/zero`` are "not a regular file" (never opened), a folder
without media is named, an animated WebP / multi-page TIFF of real frames says that only its
first frame is analysed."""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest
from _gan_setup import write_tiny_generator
from _media import write_video

from datasets_builders.faces import FaceDetector, FrameTooSmallError
from mrigan.app.cli import main as cli
from mrigan.fileio import atomic_save_image, read_image

pytestmark = pytest.mark.usefixtures("two_torch_threads")


def test_too_small_inputs_are_named_with_their_size(ff_examples, tmp_path, capsys):
    photo = read_image(ff_examples / "ex_original.png")
    case = tmp_path / "case"
    case.mkdir()
    sizes = {"a_17x9.png": (17, 9), "b_1x1.png": (1, 1), "c_60000x2.png": (60000, 2)}
    for name, (w, h) in sizes.items():
        atomic_save_image(case / name, cv2.resize(photo, (w, h), interpolation=cv2.INTER_AREA))
    write_video(case / "d_17x9.mp4", [cv2.resize(photo, (17, 9), interpolation=cv2.INTER_AREA)
                                      for _ in range(3)])
    sizes["d_17x9.mp4"] = (17, 9)
    gen = write_tiny_generator(tmp_path / "gen.safetensors")
    out = tmp_path / "out"
    assert cli(["analyze", str(case), "--generator", str(gen), "--out", str(out), "--device",
                "cpu", "--no-progress", "--every", "1"]) == 1  # nothing could be analysed
    err = capsys.readouterr().err
    assert "Traceback" not in err and "torch.cat" not in err
    res = {e["path"].rsplit("/", 1)[1]: e for e in
           json.loads((out / "results.json").read_text())["inputs"]}
    assert sorted(res) == sorted(sizes)
    for name, (w, h) in sizes.items():
        e = res[name]
        assert e["status"] == "no_face", e
        assert e["reason"].startswith(f"image too small for face detection ({w}x{h};"), e


def test_the_face_detector_refuses_a_frame_smaller_than_its_smallest_face():
    det = FaceDetector(device="cpu", max_side=640, min_face_size=40)
    with pytest.raises(FrameTooSmallError, match=r"\(30x30; faces of at least 40 px"):
        det.detect([np.zeros((30, 30, 3), np.uint8)])
    assert det.detect([np.zeros((48, 48, 3), np.uint8)]) == [[]]  # big enough: no face, no error


def test_special_files_empty_folders_and_multi_frame_images_are_named(ff_examples, tmp_path,
                                                                       capsys):
    from PIL import Image

    frames = [read_image(ff_examples / n) for n in ("ex_original.png", "ex_deepfakes.png")]
    case = tmp_path / "case"
    (case / "nothing_here").mkdir(parents=True)
    (case / "nothing_here" / "notes.txt").write_text("no media")
    fifo = case / "pipe.mp4"
    os.mkfifo(fifo)
    pictures = [Image.fromarray(f) for f in frames]
    pictures[0].save(case / "anim.webp", save_all=True, append_images=pictures[1:], lossless=True)
    pictures[0].save(case / "pages.tiff", save_all=True, append_images=pictures[1:])
    gen = write_tiny_generator(tmp_path / "gen.safetensors")
    out = tmp_path / "out"
    inputs = [fifo, "/dev/zero", case / "nothing_here", case / "anim.webp", case / "pages.tiff"]
    assert cli(["analyze", *map(str, inputs), "--generator", str(gen), "--out", str(out),
                "--device", "cpu", "--no-progress", "--set", "faces.max_side=320"]) == 0
    err = capsys.readouterr().err
    res = {e["path"]: e for e in json.loads((out / "results.json").read_text())["inputs"]}
    for special in (str(fifo), "/dev/zero"):
        assert res[special]["status"] == "unreadable"
        assert res[special]["reason"].startswith("not a regular file")
        assert f"{special}: not analysed, unreadable: not a regular file" in err
    empty = res[str(case / "nothing_here")]
    assert empty["status"] == "missing" and "holds no image or video" in empty["reason"]
    for name in ("anim.webp", "pages.tiff"):
        e = res[str(case / name)]
        assert e["status"] == "analysed", e
        assert any("2 frames/pages" in w and "only its first" in w for w in e["warnings"]), e
