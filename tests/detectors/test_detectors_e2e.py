"""End to end on real FaceForensics++ faces (../shared/data/ffpp): build MRI-DF, train the
plain and the MRI detector through the same code, aggregate per video, evaluate, reports.

Tiny on purpose (tiny CNN, 64 px, a few dozen steps on CPU): it shows the pipeline works on
real media and that its outputs agree with each other, not a detector's accuracy.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from _gan_setup import write_tiny_generator

from detectors.config import (
    AggregationConfig,
    DetectorConfig,
    DetectorDataConfig,
    DetectorInputConfig,
    DetectorModelConfig,
    DetectorTrainConfig,
    EvalFaceSetConfig,
    EvaluateConfig,
)
from detectors.evaluate import evaluate_detector
from detectors.metrics import binary_report
from detectors.train import train_detector
from mrigan.fileio import read_image

pytestmark = pytest.mark.usefixtures("one_torch_thread")




@pytest.fixture(scope="module")
def ffpp_mri_df(ffpp_root, tmp_path_factory):
    """MRI-DF from the 3 FF++ originals and their fakes: 4 frames each, 64 px crops,
    one identity per split (train / val / test); MTCNN on every sampled frame (the data these
    training assertions were set on; the builder's default follows faces between detections)."""
    from datasets_builders.mri_df import (
        BuildConfig,
        BuildSourceConfig,
        BuildSplitConfig,
        FaceDetectionConfig,
        build_mri_df,
    )

    out = tmp_path_factory.mktemp("ffpp_mri_df")
    cfg = BuildConfig(out=str(out), sources=(BuildSourceConfig(kind="ffpp", root=str(ffpp_root)),),
                      every=25, max_frames=4, progress=False, detect_every=1,
                      faces=FaceDetectionConfig(device="cpu", size=64, max_side=640),
                      split=BuildSplitConfig(val=0.34, test=0.34))
    threads = torch.get_num_threads()
    build_mri_df(cfg, log=lambda *a: None)
    torch.set_num_threads(threads)  # (numba's parallel SSIM resets OpenMP's thread count)
    return out


def _train_cfg(root, out_dir, name, input_cfg, steps):
    return DetectorConfig(
        name=name, out_dir=str(out_dir),
        model=DetectorModelConfig(backbone="tiny-cnn"),
        input=input_cfg,
        data=DetectorDataConfig(root=str(root), image_size=64, workers=0),
        train=DetectorTrainConfig(epochs=100, max_steps=steps, batch_size=8, lr=2e-3, device="cpu",
                          precision="fp32", augment=("flip",), log_every=5, val_every=5))


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _check_reports(out, test_names, expected_faces):
    report = json.loads((out / "report.json").read_text())
    md = (out / "report.md").read_text()
    assert "## Video level" in md and "## Frame level" in md and "| ROC AUC |" in md
    params = report["aggregation"]["params"]
    grid = report["aggregation"]["grid"]
    thresholds = sorted({g["threshold"] for g in grid})
    # the paper's 0.5-0.95 grid plus up to 9 quantiles of the validation face scores
    assert set(AggregationConfig().thresholds) <= set(thresholds) and len(thresholds) <= 19
    assert len(grid) == 7 * len(thresholds) and {g["fraction"] for g in grid} == set(
        AggregationConfig().fractions)
    assert params["threshold"] in thresholds and 0.1 <= params["fraction"] <= 0.7
    for name in test_names:
        res = report["test_sets"][name]
        faces = _read_csv(out / "predictions" / f"{name}_faces.csv")
        videos = _read_csv(out / "predictions" / f"{name}_videos.csv")
        assert len(faces) == expected_faces[name] == res["frame"]["n"]
        # the JSON's frame metrics are those of the per-face CSV
        y = np.array([r["label"] == "fake" for r in faces], dtype=int)
        p = np.array([float(r["p_fake"]) for r in faces])
        again = binary_report(y, p, report["frame_threshold"])
        for key in ("auc", "eer", "ap", "accuracy", "tpr", "tnr"):
            assert again[key] == pytest.approx(res["frame"][key], abs=1e-5, nan_ok=True), key
        # the per-video verdicts follow the chosen rule on the per-face scores
        for v in videos:
            face_p = np.array([float(r["p_fake"]) for r in faces if r["video"] == v["video"]])
            share = float(np.mean(face_p > params["threshold"]))
            assert float(v["score"]) == pytest.approx(share, abs=1e-6)
            assert (v["verdict"] == "fake") == (share > params["fraction"])
            assert int(v["faces"]) == face_p.size
        vy = np.array([v["label"] == "fake" for v in videos], dtype=int)
        vpred = np.array([v["verdict"] == "fake" for v in videos], dtype=int)
        assert res["video"]["accuracy"] == pytest.approx(float(np.mean(vy == vpred)))
        assert res["video"]["tp"] + res["video"]["fn"] == int(vy.sum())
        for kind in ("roc", "confusion_video", "confusion_frame"):
            png = read_image(out / "plots" / f"{name}_{kind}.png")
            assert png.shape[0] > 100 and png.std() > 1
    return report


def test_plain_and_mri_detectors_end_to_end_on_ffpp(ffpp_mri_df, tmp_path):
    from mrigan.mri_df_format import read_manifest

    rows = read_manifest(ffpp_mri_df)
    n_split = {s: sum(r["split"] == s for r in rows) for s in ("train", "val", "test")}
    assert all(n > 0 for n in n_split.values())

    # --- plain faces: train, then resume to more steps -------------------------------------
    plain_cfg = _train_cfg(ffpp_mri_df, tmp_path, "plain", DetectorInputConfig(name="plain"), 20)
    first = train_detector(plain_cfg, log=lambda *a: None)
    assert first.step == 20 and first.best_checkpoint.is_file() and first.last_checkpoint.is_file()
    more = train_detector(_train_cfg(ffpp_mri_df, tmp_path, "plain",
                                     DetectorInputConfig(name="plain"), 30), log=lambda *a: None)
    assert more.step == 30 and more.history[: len(first.history)] == first.history
    assert (tmp_path / "plain" / "config.yaml").is_file()
    # best.pt is the epoch with the highest validation AUC
    aucs = [h["auc"] for h in more.history]
    assert more.best_epoch == more.history[int(np.nanargmax(aucs))]["epoch"]
    assert more.best_value == pytest.approx(np.nanmax(aucs))
    assert any((tmp_path / "plain" / "tb").iterdir())

    tests = (EvalFaceSetConfig(name="test", split="test"),
             EvalFaceSetConfig(name="test_deepfakes", split="test", methods=("Deepfakes",)),
             EvalFaceSetConfig(name="train", split="train"))
    plain_eval = evaluate_detector(EvaluateConfig(
        checkpoint=str(more.last_checkpoint), test_sets=tests, bootstrap=100, device="cpu",
        aggregation=AggregationConfig(rule="count")), log=lambda *a: None)
    out = tmp_path / "plain" / "reports" / "evaluate"
    report = _check_reports(out, ["test", "test_deepfakes", "train"],
                            {"test": n_split["test"], "test_deepfakes": n_split["test"],
                             "train": n_split["train"]})
    for level in ("frame", "video"):  # the returned dict is what was written
        for key in ("auc", "accuracy", "tp", "fn"):
            assert report["test_sets"]["test"][level][key] == pytest.approx(
                plain_eval["test_sets"]["test"][level][key], nan_ok=True)
    # the training faces are learnt: the loop optimises what it should
    assert report["test_sets"]["train"]["frame"]["auc"] > 0.9
    assert "ci95" in report["test_sets"]["test"]["frame"]

    # --- MRIs of the same faces, precomputed by a generator into a cache -------------------
    gen_file = write_tiny_generator(tmp_path / "gen.safetensors")
    cache = tmp_path / "mri_cache"
    mri_input = DetectorInputConfig(name="mri", generator=str(gen_file), mri_cache=str(cache))
    mri = train_detector(_train_cfg(ffpp_mri_df, tmp_path, "mri", mri_input, 10),
                         log=lambda *a: None)
    assert mri.step == 10
    cached = sorted(cache.rglob("*.png"))
    assert len(cached) == n_split["train"] + n_split["val"]  # test MRIs are made at evaluation

    # cached MRIs are the generator's predictions for the faces (not the manifest's truth)
    from mrigan.inference import MRIGenerator

    gen = MRIGenerator.load(gen_file, device="cpu")
    row = next(r for r in rows if r["split"] == "train" and r["label"] == "real")
    face = read_image(ffpp_mri_df / row["image"])
    expected = np.clip(np.rint(gen.predict(face) * 255), 0, 255)
    got = read_image((cache / row["image"]).with_suffix(".png")).astype(float)
    assert np.abs(got - expected).max() <= 1
    assert got.std() > 0  # unlike the manifest's black MRI for a real face

    from mrigan.app.cli import main

    rc = main(["evaluate", "--checkpoint", str(mri.best_checkpoint), "--test", "test=test",
               "--test", "nt=test:NeuralTextures", "--set", "bootstrap=50",
               "--set", "device=cpu", "--out", str(tmp_path / "mri_eval")])
    assert rc == 0
    assert len(sorted(cache.rglob("*.png"))) == len(rows)  # val + test filled in too
    mri_report = _check_reports(tmp_path / "mri_eval", ["test"], {"test": n_split["test"]})
    assert mri_report["detector"]["input"] == "mri"
