"""Issue 11 item 2: ``mrigan evaluate`` on face sets (labelled faces without MRIs) from real
labelled videos that have no originals (../shared/data/labelled_unpaired: FF++ fakes without
their original, a 1080p DFDC fake, in-the-wild clips), with the video rule chosen on a
validation face set only.

The face sets are built by the project's face-set builder (``build_face_set``, the function
behind ``mrigan build-faces``) from a copy of the shared labels.csv with a split column.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from _gan_setup import write_tiny_generator

import detectors.data as detector_data
import detectors.evaluate as evaluate_module
from datasets_builders.build_config import BuildSourceConfig
from datasets_builders.build_faces import BuildFaceSetConfig, build_face_set
from datasets_builders.faces import RECALL_SECOND_PASS_BELOW, FaceDetectionConfig
from detectors.config import (
    DetectorConfig,
    DetectorDataConfig,
    DetectorModelConfig,
    DetectorTrainConfig,
    EvalFaceSetConfig,
    EvaluateConfig,
)
from detectors.evaluate import evaluate_detector
from detectors.train import train_detector
from mrigan.app.cli import main
from mrigan.fileio import sha256_file
from mrigan.mri_df_format import ManifestError, read_manifest
from mrigan.outputs import OutputLocationError

pytestmark = pytest.mark.usefixtures("one_torch_thread")
QUIET = {"log": lambda *a, **k: None}
#: identities whose videos validate (reals and fakes of two people + an FF++ fake); the rest test
VAL_IDENTITIES = {"wild_bateman", "wild_clinton", "ffpp_750"}


def _write_face_set(root: Path, rows: list[dict]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "manifest.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


def _labels_with_splits(labels_csv: Path, tmp: Path) -> Path:
    """A copy of the shared labels.csv in ``tmp`` with a ``split`` column (val for
    ``VAL_IDENTITIES``, test for the rest) and paths relative to the copy; shared data is only
    read."""
    with open(labels_csv, newline="", encoding="utf-8") as fh:
        entries = list(csv.DictReader(fh))
    copy = tmp / "labels_split.csv"
    with open(copy, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*entries[0], "split"])
        writer.writeheader()
        for e in entries:
            writer.writerow({**e, "path": os.path.relpath(labels_csv.parent / e["path"], tmp),
                             "split": "val" if e["identity"] in VAL_IDENTITIES else "test"})
    return copy


@pytest.fixture(scope="module")
def face_sets(shared_data, tmp_path_factory):
    """The project's face-set builder (``build_face_set``, what ``mrigan build-faces`` runs) on
    the shared labels.csv with its split column: 3 sampled frames of every video (every 4th: a
    sequential decoder reads the fewest frames), at most 3 faces per video, 64 px crops, MTCNN
    on frames downscaled to 480 px with the paper thresholds (second pass on, as for every face
    set). ``all`` (one
    folder, split column val/test), ``val`` and ``test`` (separate folders with the same
    faces, read whole: ``split=""``), all without an ``mri`` column."""
    base = tmp_path_factory.mktemp("facesets")
    labels = _labels_with_splits(shared_data / "labelled_unpaired" / "labels.csv", base)
    faces = FaceDetectionConfig(device="cpu", max_side=480,
                                min_face_size=20, batch_size=4, size=64,
                                second_pass_below=RECALL_SECOND_PASS_BELOW)
    cfg = BuildFaceSetConfig(out=str(base / "all"), sources=(BuildSourceConfig(kind="csv",
                                                                          root=str(labels)),),
                             every=4, max_frames=3, max_faces=3, faces=faces, progress=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # MTCNN on a shared 2-core box: one thread measured ~4x faster (60 s -> 15 s)
    try:
        summary = build_face_set(cfg, **QUIET)
    finally:
        torch.set_num_threads(threads)
    assert summary.pairs_written == 13 * 3
    rows = read_manifest(base / "all", require_mri=False)
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
                         model=DetectorModelConfig(backbone="tiny-cnn"),
                         data=DetectorDataConfig(root=str(root), image_size=32, workers=0),
                         train=DetectorTrainConfig(epochs=1, max_steps=3, batch_size=4, lr=1e-3,
                                           device="cpu", precision="fp32", augment=()))
    return train_detector(cfg, **QUIET).best_checkpoint


def test_face_set_manifest_has_no_mri(face_sets):
    """The builder's face set: no MRI files and an empty ``mri`` column, so reading it as an
    MRI-DF is refused naming the problem (the local crops this test used before had no ``mri``
    column at all and were refused for the missing column)."""
    with pytest.raises(ManifestError, match="has no mri"):
        read_manifest(face_sets["all"])
    rows = read_manifest(face_sets["all"], require_mri=False)
    assert len(rows) == 13 * 3 and not any(r.get("mri") for r in rows)
    assert not (face_sets["all"] / "mri").exists()
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
                         validation=EvalFaceSetConfig(name="validation", root=str(face_sets["val"]),
                                                  split=""),
                         test_sets=(EvalFaceSetConfig(name="unpaired", root=str(face_sets["test"]),
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
        validation=EvalFaceSetConfig(name="validation", root=str(face_sets["val"]), split=""),
        test_sets=(EvalFaceSetConfig(name="unpaired", root=str(face_sets["test"]), split=""),),
        input=report_input(generator)), log=logs.append)
    assert any("0 made, 15 reused" in line for line in logs)
    assert any("0 made, 24 reused" in line for line in logs)
    assert stamp == {p: p.stat().st_mtime_ns for p in (out / "mri_cache").rglob("*.png")}
    # nothing was written into the input face sets
    assert not list(face_sets["val"].rglob("mri_cache")) and not list(
        face_sets["test"].rglob("*.json"))


def report_input(generator):
    from detectors.config import DetectorInputConfig

    return DetectorInputConfig(name="mri", generator=str(generator))


def test_outputs_never_go_inside_a_face_set(face_sets, checkpoint):
    with pytest.raises(OutputLocationError, match="inside the input folder"):
        evaluate_detector(EvaluateConfig(
            checkpoint=str(checkpoint), out_dir=str(face_sets["test"] / "report"), bootstrap=0,
            device="cpu",
            validation=EvalFaceSetConfig(name="validation", root=str(face_sets["val"]), split=""),
            test_sets=(EvalFaceSetConfig(name="unpaired", root=str(face_sets["test"]), split=""),)),
            **QUIET)
    assert not (face_sets["test"] / "report").exists()
