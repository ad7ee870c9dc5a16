"""Issue 11 item 2: ``mrigan evaluate`` on face sets (labelled faces without MRIs) from real
labelled videos that have no originals (../shared/data/labelled_unpaired: FF++ fakes without
their original, a 1080p DFDC fake, in-the-wild clips), with the video rule chosen on a
validation face set only.

The face sets are built here with a small local helper (FaceDetector + crop_face); the project's
face-set builder command is another module's job.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import pytest
from _gan_setup import write_tiny_generator

import detectors.data as detector_data
import detectors.evaluate as evaluate_module
from datasets_builders.faces import FaceDetector, crop_face
from datasets_builders.frames import iter_frames
from detectors.config import (
    DataConfig,
    DetectorConfig,
    EvaluateConfig,
    FaceSetConfig,
    ModelConfig,
    TrainConfig,
)
from detectors.evaluate import evaluate_detector
from detectors.train import train_detector
from mrigan.app.cli import main
from mrigan.fileio import atomic_save_image, sha256_file
from mrigan.mri_df_format import ManifestError, read_manifest
from mrigan.outputs import OutputLocationError

pytestmark = pytest.mark.usefixtures("one_torch_thread")
QUIET = {"log": lambda *a, **k: None}
COLUMNS = ["image", "label", "video", "identity", "split", "method", "source", "frame", "track"]
#: identities whose videos validate (reals and fakes of two people + an FF++ fake); the rest test
VAL_IDENTITIES = {"wild_bateman", "wild_clinton", "ffpp_750"}


def _write_face_set(root: Path, rows: list[dict], columns=COLUMNS) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "manifest.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return root


def _crop_face_set(labels_csv: Path, out: Path) -> list[dict]:
    """Three frames of every labelled video, cropped at the largest face of the first (the
    faces move little within 8 frames; one detection per video keeps the test quick)."""
    detector = FaceDetector(device="cpu", thresholds=(0.6, 0.7, 0.7), max_side=640,
                            min_face_size=20)
    rows = []
    with open(labels_csv, newline="", encoding="utf-8") as fh:
        entries = list(csv.DictReader(fh))
    for entry in entries:
        video = labels_csv.parent / entry["path"]
        frames = list(iter_frames(video, every=4, max_frames=3))
        found = detector.detect([frames[0][1]])[0]
        assert found, f"no face in {video}"
        box = max(found, key=lambda b: b.area)
        for index, frame in frames:
            rel = f"faces/{Path(entry['path']).stem}_{index:04d}.png"
            atomic_save_image(out / rel, crop_face(frame, box, size=64))
            rows.append({"image": rel, "label": entry["label"], "video": entry["path"],
                         "identity": entry["identity"], "method": entry["method"],
                         "source": entry["dataset"], "frame": index, "track": 0,
                         "split": "val" if entry["identity"] in VAL_IDENTITIES else "test"})
    return rows


@pytest.fixture(scope="module")
def face_sets(shared_data, tmp_path_factory):
    """``all`` (one folder, split column val/test), ``val`` and ``test`` (separate folders, read
    whole: ``split=""``), all without an ``mri`` column (the face-set format requires
    image,label,video,identity,split)."""
    base = tmp_path_factory.mktemp("facesets")
    rows = _crop_face_set(shared_data / "labelled_unpaired" / "labels.csv", base / "all")
    _write_face_set(base / "all", rows)
    for split in ("val", "test"):
        part = [r for r in rows if r["split"] == split]
        for r in part:
            (base / split / r["image"]).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(base / "all" / r["image"], base / split / r["image"])
        _write_face_set(base / split, part)
    return {"all": base / "all", "val": base / "val", "test": base / "test", "rows": rows}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny-cnn detector trained for a few steps on the synthetic MRI-DF."""
    from datasets_builders.synthetic import write_synthetic_mri_df

    base = tmp_path_factory.mktemp("det")
    root = write_synthetic_mri_df(base / "syn", n_faces=8, size=32, seed=3, val_fraction=0.5)
    cfg = DetectorConfig(name="tiny", out_dir=str(base / "runs"),
                         model=ModelConfig(backbone="tiny-cnn"),
                         data=DataConfig(root=str(root), image_size=32, workers=0),
                         train=TrainConfig(epochs=1, max_steps=3, batch_size=4, lr=1e-3,
                                           device="cpu", precision="fp32", augment=()))
    return train_detector(cfg, **QUIET).best


def test_face_set_manifest_has_no_mri_column(face_sets):
    with pytest.raises(ManifestError, match="missing column"):
        read_manifest(face_sets["all"])
    rows = read_manifest(face_sets["all"], require_mri=False)
    assert len(rows) == 13 * 3 and "mri" not in rows[0]
    assert {r["label"] for r in rows if r["split"] == "val"} == {"real", "fake"}
    assert {r["label"] for r in rows if r["split"] == "test"} == {"real", "fake"}


def test_evaluate_cli_on_a_face_set_with_val_and_test_splits(face_sets, checkpoint, tmp_path):
    out = tmp_path / "report"
    rc = main(["evaluate", "--checkpoint", str(checkpoint), "--out", str(out),
               "--validation-set", f"{face_sets['all']}@val",
               "--test-set", f"unpaired={face_sets['all']}@test", "--set", "bootstrap=100",
               "--set", "device=cpu"])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    res = report["test_sets"]["unpaired"]
    test_videos = {r["video"] for r in face_sets["rows"] if r["split"] == "test"}
    val_videos = {r["video"] for r in face_sets["rows"] if r["split"] == "val"}
    assert report["validation"]["videos"] == len(val_videos) == 5
    assert res["videos"] == res["video"]["n"] == len(test_videos) == 8
    assert res["units"] == res["frame"]["n"] == 3 * 8
    assert (res["video"]["n_fake"], res["video"]["n_real"]) == (5, 3)
    for level in ("video", "frame"):
        assert set(res[level]["ci95"]) >= {"auc", "accuracy", "tpr", "tnr"}
    with open(out / "predictions" / "unpaired_videos.csv", newline="") as fh:
        assert {r["video"] for r in csv.DictReader(fh)} == test_videos
    for png in ("unpaired_roc.png", "unpaired_confusion_video.png",
                "unpaired_confusion_frame.png"):
        assert (out / "plots" / png).stat().st_size > 1000
    md = (out / "report.md").read_text()
    assert "## Video level" in md and "## Frame level" in md and "unpaired" in md
    # the rule applied to the test videos is exactly the one chosen on validation
    assert report["aggregation"]["searched"] and report["aggregation"]["grid"]


def test_test_set_is_never_read_during_the_grid_search(face_sets, checkpoint, tmp_path,
                                                       monkeypatch):
    """Separate validation and test face-set folders: every face file read is recorded; no test
    face is read before the video rule is fixed, and the search sees validation videos only."""
    read: list[Path] = []
    real_load_face = detector_data.load_face

    def recording_load_face(path, size):
        read.append(Path(path).resolve())
        return real_load_face(path, size)

    monkeypatch.setattr(detector_data, "load_face", recording_load_face)
    searched: list[dict] = []
    real_choose = evaluate_module.choose_rule

    def recording_choose(rule, validation, **kw):
        chosen = real_choose(rule, validation, **kw)
        searched.append({"read_before": list(read), "videos": {v.video for v in validation},
                         "params": dict(chosen.params)})
        return chosen

    monkeypatch.setattr(evaluate_module, "choose_rule", recording_choose)
    cfg = EvaluateConfig(checkpoint=str(checkpoint), out_dir=str(tmp_path / "out"),
                         validation=FaceSetConfig(name="validation", root=str(face_sets["val"]),
                                                  split=""),
                         test_sets=(FaceSetConfig(name="unpaired", root=str(face_sets["test"]),
                                                  split=""),),
                         bootstrap=0, device="cpu", precision="fp32")
    results = evaluate_detector(cfg, **QUIET)

    test_root, val_root = face_sets["test"].resolve(), face_sets["val"].resolve()
    assert len(searched) == 1
    before = searched[0]["read_before"]
    assert before and all(val_root in p.parents for p in before)  # validation faces only
    assert len(before) == 5 * 3
    assert searched[0]["videos"] == {r["video"] for r in face_sets["rows"] if r["split"] == "val"}
    after = read[len(before):]
    assert len(after) == 8 * 3 and all(test_root in p.parents for p in after)
    assert results["aggregation"]["params"] == searched[0]["params"]


def test_mri_input_made_by_a_generator_is_cached_by_content_hash(face_sets, checkpoint,
                                                                 tmp_path):
    generator = write_tiny_generator(tmp_path / "gen.safetensors")
    out = tmp_path / "out"
    args = ["evaluate", "--checkpoint", str(checkpoint), "--out", str(out),
            "--validation-set", str(face_sets["val"]), "--test-set",
            f"unpaired={face_sets['test']}", "--generator", str(generator),
            "--set", "bootstrap=0", "--set", "device=cpu"]
    assert main(args) == 0
    gen_sha = sha256_file(generator)
    expected = set()
    for folder in (face_sets["val"], face_sets["test"]):
        for r in read_manifest(folder, require_mri=False):
            key = hashlib.sha256((folder / r["image"]).read_bytes()
                                 + gen_sha.encode("ascii")).hexdigest()
            expected.add(key)
    cached = {p.stem for p in (out / "mri_cache").rglob("*.png")}
    assert cached == expected and len(cached) == 13 * 3
    report = json.loads((out / "report.json").read_text())
    assert report["detector"]["input"] == "mri"
    # a second run reuses every MRI (same bytes, same generator)
    stamp = {p: p.stat().st_mtime_ns for p in (out / "mri_cache").rglob("*.png")}
    logs: list[str] = []
    evaluate_detector(EvaluateConfig(
        checkpoint=str(checkpoint), out_dir=str(out), bootstrap=0, device="cpu",
        validation=FaceSetConfig(name="validation", root=str(face_sets["val"]), split=""),
        test_sets=(FaceSetConfig(name="unpaired", root=str(face_sets["test"]), split=""),),
        input=report_input(generator)), log=logs.append)
    assert any("0 made, 15 reused" in line for line in logs)
    assert any("0 made, 24 reused" in line for line in logs)
    assert stamp == {p: p.stat().st_mtime_ns for p in (out / "mri_cache").rglob("*.png")}
    # nothing was written into the input face sets
    assert not list(face_sets["val"].rglob("mri_cache")) and not list(
        face_sets["test"].rglob("*.json"))


def report_input(generator):
    from detectors.config import InputConfig

    return InputConfig(name="mri", generator=str(generator))


def test_outputs_never_go_inside_a_face_set(face_sets, checkpoint):
    with pytest.raises(OutputLocationError, match="inside the input folder"):
        evaluate_detector(EvaluateConfig(
            checkpoint=str(checkpoint), out_dir=str(face_sets["test"] / "report"), bootstrap=0,
            device="cpu",
            validation=FaceSetConfig(name="validation", root=str(face_sets["val"]), split=""),
            test_sets=(FaceSetConfig(name="unpaired", root=str(face_sets["test"]), split=""),)),
            **QUIET)
    assert not (face_sets["test"] / "report").exists()
