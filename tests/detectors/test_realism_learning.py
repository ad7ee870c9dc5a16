"""Must-show: a small realism model learns a known MOS from real faces and generalises to
people it never saw. Ground truth: graded self-blended fakes (``detectors.realism.graded``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _media import shared_media

from datasets_builders.synthetic import demo_faces
from detectors.realism import metrics
from detectors.realism.config import RealismConfig, RealismDataConfig, RealismTrainConfig
from detectors.realism.graded import faces_from_media, graded_clips
from detectors.realism.model import RealismModelConfig
from detectors.realism.predict import predict_clips
from detectors.realism.sampler import SequenceSampler
from detectors.realism.train import train_regressor

SIZE = 64


@pytest.fixture(scope="module")
def faces_by_person(shared_data):
    """Seven real people: three FF++ originals and one DFDC video (MTCNN tracks), the FF++
    example frame, Grace Hopper (matplotlib's sample photo) and the astronaut (scikit-image)."""
    torch.set_num_threads(2)
    people = faces_from_media(shared_media(shared_data), size=SIZE)
    people["astronaut"] = demo_faces(SIZE)
    assert all(len(v) >= 6 for v in people.values()), {k: len(v) for k, v in people.items()}
    return people


def test_small_model_learns_graded_realism_on_unseen_people(faces_by_person):
    train_people = ("ffpp519", "ffpp634", "astronaut", "ffexample", "dfdc")
    test_people = ("ffpp004", "hopper")  # a heavily compressed video and an old photograph
    levels = tuple(np.linspace(0.0, 1.0, 9))
    train = graded_clips({p: faces_by_person[p] for p in train_people}, levels,
                         clips_per_level=1, frames_per_clip=6, seed=0)
    test = graded_clips({p: faces_by_person[p] for p in test_people}, levels,
                        clips_per_level=2, frames_per_clip=6, seed=1)
    assert not {i for c in train for i in c.record.identities} & {i for c in test for i in c.record.identities}
    cfg = RealismConfig(
        data=RealismDataConfig(image_size=SIZE),
        sampler=SequenceSampler(num_frames=5, stride=1, test_draws=10),
        model=RealismModelConfig(backbone="tiny-cnn", inputs="plain", hidden=64, dropout=0.2),
        train=RealismTrainConfig(epochs=12, batch_size=8, lr=2e-3, loss="rmse", device="cpu",
                          precision="fp32", threads=2, tensorboard=False, seed=0),
    )
    result = train_regressor(cfg, train, (), out_dir=None, log=lambda _: None)
    pred = predict_clips(result.model, test, cfg.sampler, inputs="plain", size=SIZE)
    truth = np.array([c.mos for c in test])
    report = metrics.mos_report(truth, pred)
    print("unseen people:", {k: round(v, 3) for k, v in report.items()})
    assert report["srcc"] >= 0.8, report
    assert report["rmse"] < truth.std()  # better than always answering the mean MOS
    # the losses fell: training did the work, not the initialisation
    assert result.history[-1]["loss"] < 0.7 * result.history[0]["loss"]


def test_cli_train_then_evaluate_writes_reports(faces_by_person, tmp_path, capsys):
    """``mrigan train-realism`` then ``mrigan evaluate-realism`` (with a 0.75/0.25 ensemble) on
    graded clips written to disk in the DREAM-like ``file,mos,identity,method`` table."""
    import csv
    import json

    import scipy.stats
    import yaml

    from detectors.realism.graded import write_clips
    from mrigan.app.cli import main

    people = {p: faces_by_person[p] for p in ("ffpp519", "ffpp634", "astronaut", "ffexample", "dfdc")}
    levels = (0.0, 0.25, 0.5, 0.75, 1.0)
    # Two runs of the blender with different seeds stand in for two manipulation methods.
    clips = (graded_clips(people, levels, frames_per_clip=5, seed=0, method="blend_a", key_prefix="a/")
             + graded_clips(people, levels, frames_per_clip=5, seed=1, method="blend_b", key_prefix="b/"))
    labels = write_clips(clips, tmp_path / "clips")
    common = ["--config", "configs/realism_cpu.yaml",
              "--set", f"data.labels=[{labels}]", "--set", f"data.clips={tmp_path / 'clips'}",
              "--set", "data.split=both", "--set", "data.test_fraction=0.4",
              "--set", "data.val_fraction=0.3", "--set", "train.epochs=2",
              "--set", "sampler.test_draws=2", "--set", "train.val_draws=1",
              "--set", "data.image_size=32"]
    assert main(["train-realism", *common, "--no-baseline", "--out", str(tmp_path / "plain")]) == 0
    assert main(["train-realism", *common, "--set", "model.inputs=mri", "--no-baseline",
                 "--out", str(tmp_path / "mri")]) == 0
    run = tmp_path / "plain"
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["data"]["split"] == "both" and saved["train"]["epochs"] == 2
    assert (run / "checkpoints" / "best.pt").is_file() and (run / "checkpoints" / "last.pt").is_file()
    report = json.loads((run / "reports" / "report.json").read_text())
    assert set(report["models"]) == {"model"}
    sets = report["models"]["model"]["sets"]
    assert set(sets) == {"unseen_identity", "unseen_method", "unseen_both"}

    out = tmp_path / "eval"
    assert main(["evaluate-realism", "--checkpoint", str(run / "checkpoints" / "best.pt"),
                 "--ensemble", str(tmp_path / "mri" / "checkpoints" / "best.pt"),
                 "--weights", "0.75", "0.25", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "unseen_method" in printed and "ensemble" in printed
    ev = json.loads((out / "report.json").read_text())
    assert ev["ensemble"]["weights"] == [0.75, 0.25]
    # Same checkpoint, same seeded test draws: evaluate-realism reproduces the training report.
    for s in sets:
        assert ev["models"]["model"]["sets"][s]["srcc"] == pytest.approx(sets[s]["srcc"], abs=1e-6)
    # Every number in the report is recomputed from predictions.csv with SciPy.
    with open(out / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["test_set"] for r in rows} == set(sets)
    for name in ("model", "baseline", "member1_mri", "ensemble"):
        for s, rep in ev["models"][name]["sets"].items():
            t = np.array([float(r["mos"]) for r in rows if r["test_set"] == s])
            p = np.array([float(r[name]) for r in rows if r["test_set"] == s])
            assert rep["n"] == len(t) >= 2
            assert rep["plcc"] == pytest.approx(scipy.stats.pearsonr(t, p)[0], abs=1e-6)
            assert rep["srcc"] == pytest.approx(scipy.stats.spearmanr(t, p)[0], abs=1e-6)
            assert rep["rmse"] == pytest.approx(np.sqrt(np.mean((t - p) ** 2)), abs=1e-6)
    ens = np.array([float(r["ensemble"]) for r in rows])
    mix = 0.75 * np.array([float(r["model"]) for r in rows]) + 0.25 * np.array([float(r["member1_mri"]) for r in rows])
    np.testing.assert_allclose(ens, mix, atol=1e-6)
    import cv2

    img = cv2.imread(str(out / "scatter_model.png"))
    assert img is not None and img.shape[1] > 2.5 * img.shape[0]  # three panels side by side
