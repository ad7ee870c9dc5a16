"""``mrigan analyze --detector D --set report.explain=lime|gradcam|none`` on a real FF++ video.

A tiny generator and a tiny, briefly trained frame detector; two sampled frames of the FF++
original 519. With ``lime`` each face gets a LIME overlay (captum, seeded) where Grad-CAM is
shown by default: the file on disk is the overlay of the detector's LIME map of the saved crop,
two runs write the same maps, the report shows them; ``none`` writes no explanation; an unknown
name is refused before any work.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _detector_setup import train_tiny_plain_detector
from _gan_setup import write_tiny_generator

from mrigan.app.cli import main as cli
from mrigan.fileio import read_image

pytestmark = pytest.mark.usefixtures("two_torch_threads")
pytest.importorskip("captum")

LIME_SAMPLES = 64


@pytest.fixture(scope="module")
def setup(ffpp_root, tmp_path_factory):
    base = tmp_path_factory.mktemp("explain")
    gen = write_tiny_generator(base / "gen.safetensors")
    video = ffpp_root / "original_sequences/youtube/c23/videos/519.mp4"
    return {"base": base, "gen": gen, "det": train_tiny_plain_detector(base), "video": video}


def _analyze(setup, name: str, *extra: str) -> tuple[int, Path]:
    out = setup["base"] / name
    rc = cli(["analyze", str(setup["video"]), "--generator", str(setup["gen"]),
              "--detector", str(setup["det"]), "--out", str(out), "--every", "100",
              "--device", "cpu", "--no-progress", "--set", "frames.max_frames=2",
              "--set", "faces.max_side=640", *extra])
    return rc, out


def _faces(out: Path) -> list[dict]:
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    (entry,) = results["inputs"]
    assert entry["status"] == "analysed"
    return [f for fr in entry["frames"] for f in fr["faces"]]


@pytest.fixture(scope="module")
def lime_runs(setup):
    extra = ("--set", "report.explain=lime", "--set", f"report.lime.n_samples={LIME_SAMPLES}")
    return [_analyze(setup, f"lime_{i}", *extra) for i in range(2)]


def test_lime_maps_are_the_detectors_lime_of_each_saved_face(setup, lime_runs):
    from detectors.inference import load_detector
    from detectors.lime_explain import LimeConfig, lime_faces, lime_overlay

    rc, out = lime_runs[0]
    assert rc == 0
    faces = _faces(out)
    assert len(faces) >= 2
    det = load_detector(setup["det"], device="cpu")
    for face in faces:
        assert "gradcam" not in face["files"]
        shown = read_image(out / face["files"]["lime"])
        crop = read_image(out / face["files"]["face"])
        assert shown.shape == crop.shape
        maps, probs = lime_faces(det, faces=[crop], cfg=LimeConfig(n_samples=LIME_SAMPLES))
        assert probs[0] == pytest.approx(face["fake_probability"], abs=1e-6)
        assert np.abs(maps[0]).max() > 0  # a real explanation, not an empty map
        expect = lime_overlay(crop, maps[0])
        assert np.abs(expect.astype(int) - shown.astype(int)).max() <= 1
        assert np.abs(shown.astype(int) - crop.astype(int)).max() > 20  # drawn over the face
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "LIME" in html and "Grad-CAM" not in html
    assert Path(faces[0]["files"]["lime"]).name in html


def test_lime_maps_are_seeded_two_runs_write_the_same(lime_runs):
    (rc1, out1), (rc2, out2) = lime_runs
    assert rc1 == rc2 == 0
    first, second = _faces(out1), _faces(out2)
    assert [f["files"]["lime"] for f in first] == [f["files"]["lime"] for f in second]
    for f in first:
        np.testing.assert_array_equal(read_image(out1 / f["files"]["lime"]),
                                      read_image(out2 / f["files"]["lime"]))


def test_explain_none_writes_no_explanation_and_gradcam_stays_the_default(setup):
    rc, out = _analyze(setup, "none", "--set", "report.explain=none")
    assert rc == 0
    assert all(set(f["files"]) == {"face", "mri", "overlay"} for f in _faces(out))
    assert "Grad-CAM" not in (out / "report.html").read_text(encoding="utf-8")
    rc, out = _analyze(setup, "default")
    assert rc == 0
    assert all("gradcam" in f["files"] and "lime" not in f["files"] for f in _faces(out))


@pytest.mark.parametrize(("override", "message"), [
    ("report.explain=shap", "report.explain: 'shap' is not one of ['gradcam', 'lime', 'none']"),
    ("report.lime.n_samples=1", "report.lime.n_samples: 1 is below the minimum 2"),
    ("report.lime.hide=blur", "report.lime.hide: 'blur' is not one of")])
def test_bad_explain_settings_are_refused_before_any_work(setup, override, message, capsys):
    name = "bad_" + override.split("=")[1]
    rc, out = _analyze(setup, name, "--set", override)
    assert rc == 2
    assert not out.exists()  # nothing written: refused before models or inputs were touched
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert message in err


def test_lime_runs_only_on_the_faces_the_report_shows(setup, lime_runs):
    """LIME costs n_samples detector passes per face: with ``report.worst_k=1`` only the
    highest-scoring face gets one (the same map as in the all-faces run), the others none."""
    rc, out = _analyze(setup, "lime_top1", "--set", "report.explain=lime", "--set",
                       f"report.lime.n_samples={LIME_SAMPLES}", "--set", "report.worst_k=1")
    assert rc == 0
    faces = _faces(out)
    assert len(faces) >= 2
    top = max(faces, key=lambda f: f["score"])  # first of the highest, as the report orders
    assert [f for f in faces if "lime" in f["files"]] == [top]
    _, out_all = lime_runs[0]
    same = next(f for f in _faces(out_all) if f["frame"] == top["frame"] and f["box"] == top["box"])
    np.testing.assert_array_equal(read_image(out / top["files"]["lime"]),
                                  read_image(out_all / same["files"]["lime"]))
    assert Path(top["files"]["lime"]).name in (out / "report.html").read_text(encoding="utf-8")
