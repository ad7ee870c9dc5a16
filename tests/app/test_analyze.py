"""`mrigan analyze` on real FaceForensics++ videos with a tiny MRI-GAN generator.

One module-scoped run of the command line over: two FF++ videos (an original and the Deepfakes
fake made from it), a truncated copy of a video (a broken download) and a photo without a
face, in an evidence folder. The tests then check what an analyst relies on: outputs exist and
follow the JSON schema, inputs are byte-identical afterwards, the unreadable and face-less
inputs are reported without stopping the run, the maps on disk are the generator's maps of the
crops on disk, the verdict follows the recorded scores, and the report renders in Chromium.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from _detector_setup import train_tiny_plain_detector
from _gan_setup import write_tiny_generator

from mrigan.app.cli import main as cli
from mrigan.fileio import atomic_save_image, read_image, sha256_file

pytestmark = pytest.mark.usefixtures("two_torch_threads")

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"




def _tree_hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def case(ffpp_root, tmp_path_factory):
    base = tmp_path_factory.mktemp("analyze")
    gen = write_tiny_generator(base / "gen.safetensors")
    evidence = base / "evidence"
    evidence.mkdir()
    original = ffpp_root / "original_sequences/youtube/c23/videos/519.mp4"
    fake = ffpp_root / "manipulated_sequences/Deepfakes/c23/videos/519_515.mp4"
    (evidence / "partial_download.mp4").write_bytes(original.read_bytes()[:400_000])
    from skimage import data

    atomic_save_image(evidence / "coffee.png", data.coffee())  # a photo with no face
    before = {**_tree_hashes(evidence), **{str(p): sha256_file(p) for p in (original, fake)}}
    out = base / "out"
    rc = cli(["analyze", str(original), str(fake), str(evidence), "--generator", str(gen),
              "--out", str(out), "--every", "100", "--device", "cpu", "--no-progress",
              "--set", "frames.max_frames=2", "--set", "faces.max_side=640"])
    results = json.loads((out / "results.json").read_text())
    return {"rc": rc, "out": out, "results": results, "gen": gen, "evidence": evidence,
            "original": original, "fake": fake, "before": before, "base": base}


def _by_name(results):
    return {Path(e["path"]).name: e for e in results["inputs"]}


def test_outputs_exist_and_follow_the_schema(case):
    import jsonschema

    from mrigan.app.analysis import RESULTS_SCHEMA

    assert case["rc"] == 0
    out, results = case["out"], case["results"]
    jsonschema.Draft202012Validator(RESULTS_SCHEMA).validate(results)
    assert (out / "report.html").is_file() and (out / "config.yaml").is_file()
    inputs = _by_name(results)
    for name in ("519.mp4", "519_515.mp4"):
        e = inputs[name]
        assert e["status"] == "analysed" and e["frames_read"] == 2 and e["faces"] >= 2
        assert (out / e["timeline"]).is_file()
        for fr in e["frames"]:
            assert fr["index"] in (0, 100) and abs(fr["time"] - fr["index"] / e["fps"]) < 1e-9
            for face in fr["faces"]:
                assert set(face["files"]) == {"face", "mri", "overlay"}
                for rel in face["files"].values():
                    assert (out / rel).is_file()
                    assert f"/track_{face['track']:02d}/" in rel  # filed by face track
    assert results["summary"] == {"inputs": 4, "analysed": 2,
                                  "skipped": {"unreadable": 1, "no_face": 1},
                                  "faces": inputs["519.mp4"]["faces"] + inputs["519_515.mp4"]["faces"],
                                  "verdicts": results["summary"]["verdicts"]}
    # the schema rejects what it should (it is not a schema that accepts anything)
    broken = json.loads(json.dumps(results))
    broken["inputs"][0]["verdict"]["label"] = "maybe"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, RESULTS_SCHEMA)


def test_inputs_are_unchanged_and_nothing_is_written_beside_them(case):
    after = {**_tree_hashes(case["evidence"]),
             **{str(p): sha256_file(p) for p in (case["original"], case["fake"])}}
    assert after == case["before"]
    out = case["out"].resolve()
    for p in case["out"].rglob("*"):
        assert p.resolve().is_relative_to(out)


def test_unreadable_and_faceless_inputs_are_reported_not_fatal(case):
    inputs = _by_name(case["results"])
    broken, coffee = inputs["partial_download.mp4"], inputs["coffee.png"]
    assert broken["status"] == "unreadable" and "partial_download.mp4" in broken["reason"]
    assert coffee["status"] == "no_face" and coffee["frames_read"] == 1
    assert broken["verdict"] is None and coffee["verdict"] is None
    page = (case["out"] / "report.html").read_text(encoding="utf-8")
    assert "partial_download.mp4" in page and "no face found in 1 frame(s)" in page


def test_maps_on_disk_are_the_generators_maps_of_the_crops_on_disk(case):
    from datasets_builders.faces import FaceBox, crop_face
    from datasets_builders.frames import iter_frames
    from mrigan.inference import MRIGenerator

    gen = MRIGenerator.load(case["gen"], device="cpu")
    e = _by_name(case["results"])["519_515.mp4"]
    frames = dict(iter_frames(case["fake"], every=100, max_frames=2))
    out = case["out"]
    for fr in e["frames"]:
        for face in fr["faces"]:
            crop = read_image(out / face["files"]["face"])
            expect = crop_face(frames[fr["index"]], FaceBox(*face["box"]), 1.3, gen.image_size)
            assert np.abs(crop.astype(int) - expect).max() <= 1  # box stored to 0.01 px
            mri = gen.predict(crop)
            on_disk = read_image(out / face["files"]["mri"]).astype(np.float32) / 255
            assert np.abs(on_disk - mri).max() <= 0.5 / 255 + 1e-5
            assert face["mri"]["mean"] == pytest.approx(float(mri.mean()), abs=1e-4)
            assert face["mri"]["p99"] == pytest.approx(float(np.percentile(mri, 99)), abs=1e-4)
            assert face["score"] == face["mri"]["mean"]  # no detector: the mean MRI scores


def test_verdict_is_the_named_rule_on_the_recorded_scores(case):
    from detectors import aggregate

    cfg = case["results"]["config"]["verdict"]
    for e in case["results"]["inputs"]:
        if e["status"] != "analysed":
            continue
        scores = [f["score"] for fr in e["frames"] for f in fr["faces"]]
        label, score, used = aggregate.decide(cfg["rule"], scores, threshold=cfg["mri_threshold"],
                                              fraction=cfg["fake_fraction"])
        v = e["verdict"]
        assert (v["label"], v["rule"], v["score_source"]) == (label, "count", "mri_mean")
        assert v["score"] == pytest.approx(score) and v["thresholds"] == used
        assert v["faces"] == len(scores) == e["faces"]


def test_exit_code_is_one_only_when_nothing_could_be_analysed(case, capsys):
    out = case["base"] / "out_nothing"
    rc = cli(["analyze", str(case["evidence"]), "--generator", str(case["gen"]), "--out", str(out),
              "--device", "cpu", "--no-progress"])
    assert rc == 1
    results = json.loads((out / "results.json").read_text())
    assert results["summary"]["analysed"] == 0
    assert results["summary"]["skipped"] == {"unreadable": 1, "no_face": 1}
    assert "not analysed: unreadable 1, no_face 1" in capsys.readouterr().out


def test_refuses_an_output_folder_inside_the_inputs(case, capsys):
    inside = case["evidence"] / "report"
    rc = cli(["analyze", str(case["evidence"]), "--generator", str(case["gen"]),
              "--out", str(inside), "--device", "cpu"])
    assert rc == 2 and not inside.exists()
    assert "inside the input folder" in capsys.readouterr().err


def test_python_api_and_artifact_map(case, ff_examples):
    import mrigan
    from mrigan.inference import MRIGenerator

    gen = MRIGenerator.load(case["gen"], device="cpu")
    res = mrigan.analyze(ff_examples / "ex_deepfakes.png", generator=gen)
    (r,) = res.inputs
    assert r.analysed and r.kind == "image" and r.faces == 1 and res.out_dir is None
    face = r.face_results()[0]
    assert face.files == {} and 0 < face.mri["mean"] < 1
    crop = np.full((100, 90, 3), 128, np.uint8)
    m = mrigan.artifact_map(crop, gen)
    import cv2

    expect = gen.predict(cv2.resize(crop, (64, 64), interpolation=cv2.INTER_AREA))
    assert m.shape == (64, 64, 3) and np.allclose(m, expect, atol=1e-6)


# ----------------------------------------------------------------------------- the browser


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's headless Chromium. `.ci/run` installs it (apt-get); elsewhere the test skips."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium; .ci/run does this)")
    return exe


_CHECK_SCRIPT = """
<script>
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  const bad = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt);
  const verdicts = Array.from(document.querySelectorAll('.verdict')).map(v =>
      v.getAttribute('data-verdict') + ':' + v.querySelector('.badge').innerText.trim() + ':' +
      (v.getBoundingClientRect().height > 0));
  const b = document.body;
  b.setAttribute('data-check-images', String(imgs.length));
  b.setAttribute('data-check-broken', JSON.stringify(bad));
  b.setAttribute('data-check-verdicts', JSON.stringify(verdicts));
});
</script>
"""


def _chromium(exe: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--no-first-run", "--virtual-time-budget=10000", *args],
                          capture_output=True, text=True, timeout=180)


def test_report_renders_in_chromium_with_images_and_verdicts(case, chromium):
    import html as html_lib
    import re

    out = case["out"]
    page = (out / "report.html").read_text(encoding="utf-8")
    check = out / "report_check.html"  # same folder, so relative links resolve the same
    check.write_text(page.replace("</body>", _CHECK_SCRIPT + "</body>"), encoding="utf-8")
    dom = _chromium(chromium, "--dump-dom", check.as_uri()).stdout

    def attr(name):
        m = re.search(rf'{name}="([^"]*)"', dom)
        assert m, f"{name} not set: the page script did not run\n{dom[:500]}"
        return html_lib.unescape(m.group(1))

    inputs = _by_name(case["results"])
    n_images = int(attr("data-check-images"))
    worst = sum(min(6, e["faces"]) for e in inputs.values() if e["status"] == "analysed")
    assert n_images >= 2 + 4 * worst - 4  # timelines + frame/face/MRI/overlay per shown face
    assert json.loads(attr("data-check-broken")) == []
    verdicts = json.loads(attr("data-check-verdicts"))
    expect = [f"{inputs[n]['verdict']['label']}:{inputs[n]['verdict']['label'].upper()}:true"
              for n in ("519.mp4", "519_515.mp4")]
    assert verdicts == expect
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "analyze_report.png"
    shot.unlink(missing_ok=True)
    _chromium(chromium, f"--screenshot={shot}", "--window-size=1280,2400", (out / "report.html").as_uri())
    img = read_image(shot)
    assert img.shape[:2] == (2400, 1280) and img.std() > 20  # a real page, not a blank one


def test_detector_scores_faces_and_explains_them(case, ff_examples):
    """With a (tiny, briefly trained) frame detector: each face's score is its P(fake), equal
    to the detector's own output on the saved crop, and a Grad-CAM overlay is saved."""
    from detectors.inference import load_detector

    base = case["base"]
    detector = train_tiny_plain_detector(base)
    out = base / "out_det"
    rc = cli(["analyze", str(ff_examples / "ex_deepfakes.png"), "--generator", str(case["gen"]),
              "--detector", str(detector), "--out", str(out), "--device", "cpu",
              "--no-progress"])
    assert rc == 0
    results = json.loads((out / "results.json").read_text())
    (e,) = results["inputs"]
    (face,) = e["frames"][0]["faces"]
    det = load_detector(detector, device="cpu")
    expect = det.predict_proba(faces=[read_image(out / face["files"]["face"])])[0]
    assert face["fake_probability"] == pytest.approx(expect, abs=1e-6)
    assert face["score"] == face["fake_probability"]
    assert e["verdict"]["score_source"] == "detector"
    assert e["verdict"]["thresholds"]["threshold"] == results["config"]["verdict"]["detector_threshold"]
    assert results["detector"]["path"] == str(detector) and results["detector"]["sha256"]
    cam = read_image(out / face["files"]["gradcam"])
    assert cam.shape == read_image(out / face["files"]["face"]).shape
    assert "Grad-CAM" in (out / "report.html").read_text(encoding="utf-8")


def _numbers_of(results: dict) -> dict:
    """results.json without what names the machine or the moment (created, hardware, paths
    of the per-run folder): the maps' statistics, scores, verdicts and settings."""
    kept = json.loads(json.dumps(results))
    kept.pop("created")
    kept["compute"].pop("hardware")
    return kept


def test_results_are_the_same_whatever_the_cpus_bf16(case, ff_examples, monkeypatch):
    """Issue 20: the same inputs, generator and detector give identical results.json numbers
    on a CPU with native bf16 and on one without (inference ``auto`` is fp32 on a CPU), and
    results.json says where and in which precision they were computed."""
    detector = train_tiny_plain_detector(case["base"] / "bf16")
    runs = {}
    for native in ("1", "0"):
        monkeypatch.setenv("MRIGAN_NATIVE_BF16", native)
        out = case["base"] / f"bf16_{native}"
        assert cli(["analyze", str(case["fake"]), str(ff_examples / "ex_deepfakes.png"),
                    "--generator", str(case["gen"]), "--detector", str(detector),
                    "--out", str(out), "--every", "100", "--device", "cpu", "--no-progress",
                    "--set", "frames.max_frames=2", "--set", "faces.max_side=640"]) == 0
        runs[native] = json.loads((out / "results.json").read_text())
        compute = runs[native]["compute"]
        assert compute["device"] == "cpu"
        assert compute["precision"] == {"generator": "fp32", "detector": "fp32"}
        assert ("bf16: native" if native == "1" else "bf16: not native") in compute["hardware"]
        page = (out / "report.html").read_text(encoding="utf-8")
        assert "precision generator fp32, detector fp32" in page
    with_bf16, without = (_numbers_of(runs[k]) for k in ("1", "0"))
    for r in (with_bf16, without):  # per-run folders differ only by name
        r["out"] = None
    assert with_bf16["summary"]["faces"] >= 2
    assert with_bf16 == without
    # bf16 stays available by name, and is recorded as such (its maps differ from fp32's)
    out = case["base"] / "bf16_named"
    assert cli(["analyze", str(case["fake"]), "--generator", str(case["gen"]), "--out", str(out),
                "--every", "100", "--device", "cpu", "--no-progress", "--set",
                "frames.max_frames=2", "--set", "faces.max_side=640", "--set",
                "precision=bf16"]) == 0
    named = json.loads((out / "results.json").read_text())
    assert named["compute"]["precision"] == {"generator": "bf16"}
