"""Issue 25 family 6: inputs too small for face detection are reported as such, with their size
(not as MTCNN's empty ``torch.cat``): images cut from a real FaceForensics++ frame to 17x9, 1x1
and 60000x2 pixels, and a 17x9 video of real frames, through ``mrigan analyze`` and the MRI-DF
builder's face loop."""

from __future__ import annotations

import json

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
