"""`mrigan analyze` on a real dark clip: the permissive second detection pass (on by default in
analysis) finds the faces the paper's thresholds miss, results.json records which pass found
each face and the input's face coverage, and report.html warns of low coverage next to the
verdict.

The clip: 8 frames of FF++ 634 (every 30th), the first three at 10% brightness (the paper's
MTCNN thresholds find a face in at most one of them after MP4 compression, the permissive ones
in all), the other five at 2% (no face for either), written as MP4 into tmp_path. Coverage is
then at most 3/8, under the default ``report.low_coverage`` of 0.5.
"""

from __future__ import annotations

import json

import pytest
from _gan_setup import write_tiny_generator
from _media import darkened_clip

from datasets_builders.faces import FaceDetectionConfig
from datasets_builders.frames import iter_frames
from mrigan.app.analysis import RESULTS_SCHEMA
from mrigan.app.cli import main as cli

pytestmark = pytest.mark.usefixtures("two_torch_threads")

GAINS = (0.1, 0.1, 0.1, 0.02, 0.02, 0.02, 0.02, 0.02)


@pytest.fixture(scope="module")
def dark_run(ffpp_root, tmp_path_factory):
    base = tmp_path_factory.mktemp("analyze_dark")
    (base / "media").mkdir()
    clip = darkened_clip(ffpp_root / "original_sequences/youtube/c23/videos/634.mp4",
                         base / "media" / "dark_634.mp4", GAINS)
    out = base / "out"
    rc = cli(["analyze", str(clip), "--generator", str(write_tiny_generator(base / "gen.safetensors")),
              "--out", str(out), "--every", "1", "--device", "cpu", "--no-progress",
              "--set", "faces.max_side=640"])
    first = FaceDetectionConfig(device="cpu", max_side=640).detector()  # the paper's thresholds
    frames = [f for _, f in iter_frames(clip, every=1)]
    return {"rc": rc, "clip": clip, "out": out, "frames": len(frames),
            "first_pass": [i for i, b in enumerate(first.detect(frames)) if b],
            "results": json.loads((out / "results.json").read_text())}


def test_paper_thresholds_alone_find_faces_in_under_half_the_frames(dark_run):
    assert dark_run["frames"] == len(GAINS)
    assert len(dark_run["first_pass"]) <= 1 and set(dark_run["first_pass"]) <= {0, 1, 2}


def test_second_pass_faces_and_coverage_are_recorded(dark_run):
    import jsonschema

    assert dark_run["rc"] == 0
    results = dark_run["results"]
    jsonschema.validate(results, RESULTS_SCHEMA)
    assert results["config"]["faces"]["second_pass_below"] == 0.5  # on by default in analyze
    entry = results["inputs"][0]
    assert entry["status"] == "analysed" and entry["second_pass"] is True
    with_face = [fr["index"] for fr in entry["frames"] if fr["faces"]]
    assert len(with_face) >= 2 and set(with_face) <= {0, 1, 2}  # only the 10% frames
    assert entry["face_coverage"] == pytest.approx(len(with_face) / len(GAINS))
    assert entry["face_coverage"] < 0.5
    passes = {fr["index"]: {f["detection_pass"] for f in fr["faces"]} for fr in entry["frames"]
              if fr["faces"]}
    # the paper's thresholds' faces are pass 1; every other face came from the second pass
    assert passes == {i: {1} if i in dark_run["first_pass"] else {2} for i in with_face}
    assert sum(p == {2} for p in passes.values()) >= 1
    faces = [f for fr in entry["frames"] for f in fr["faces"]]
    assert entry["verdict"]["faces"] == len(faces) == entry["faces"]


def test_report_warns_of_low_coverage_next_to_the_verdict(dark_run):
    html = (dark_run["out"] / "report.html").read_text()
    entry = dark_run["results"]["inputs"][0]
    verdict_at = html.index('class="verdict"')
    warning_at = html.index('class="warning coverage"')
    assert verdict_at < warning_at < html.index("Face tracks")
    pct = f"{entry['face_coverage']:.0%}"
    assert f"faces were found in {pct} of the sampled frames" in html
    assert "permissive second detection pass ran" in html
