"""Item 5 of issue 11: a from-scratch EfficientNet-B0 must not give one constant score.

Cause (measured, see detectors.backbones): efficientnet-pytorch's default init + BatchNorm running
statistics that start at (0, 1) and move 1% per step make every eval-mode block shrink the signal;
the head then sees a constant vector. The tests score 64 different real faces (4 FF++ videos x
16 frames) with an untrained and with a briefly trained B0, in fp32 and bf16 on CPU, and train a
real detector whose validation faces are all the same image to check the tie warning.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from datasets_builders.faces import FaceDetector, crop_face
from datasets_builders.frames import iter_frames
from detectors.config import (
    DetectorConfig,
    DetectorDataConfig,
    DetectorModelConfig,
    DetectorTrainConfig,
)
from detectors.metrics import ScoreTieWarning, all_scores_tie, warn_if_scores_tie
from detectors.model import build_detector
from detectors.train import train_detector
from mrigan.device import autocast
from mrigan.mri_df_format import read_manifest, write_manifest

pytestmark = pytest.mark.usefixtures("two_torch_threads")
SIZE = 64


@pytest.fixture(scope="module")
def faces64(ffpp_root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """64 real face crops (SIZE px, [0, 1]) and labels: three originals and one fake video."""
    videos = sorted((ffpp_root / "original_sequences/youtube/c23/videos").glob("*.mp4"))
    fake = sorted((ffpp_root / "manipulated_sequences/Deepfakes/c23/videos").glob("*.mp4"))[0]
    detector = FaceDetector(device="cpu")
    crops, labels = [], []
    for video, label in [(v, 0) for v in videos] + [(fake, 1)]:
        frames = [f for _, f in iter_frames(video, every=5, max_frames=16)]
        box = max(detector.detect(frames[:1])[0], key=lambda b: b.area)  # the face moves little
        crops += [crop_face(f, box, size=SIZE) for f in frames]
        labels += [label] * len(frames)
    assert len(crops) == 64
    x = torch.from_numpy(np.stack(crops).transpose(0, 3, 1, 2)).float() / 255.0
    return x, torch.tensor(labels, dtype=torch.float32)


def _scores(model, x, precision):
    model.eval()
    with torch.no_grad(), autocast(torch.device("cpu"), precision):
        logits = model(x)
    assert logits.dtype == torch.float32  # the head runs in fp32 under autocast too
    return torch.sigmoid(logits).double().numpy()


def _b0():
    torch.manual_seed(0)
    return build_detector(DetectorModelConfig(backbone="efficientnet-b0"))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_untrained_b0_gives_64_distinct_scores(faces64, precision):
    x, _ = faces64
    assert len(np.unique(x.flatten(1).numpy(), axis=0)) == 64  # 64 different faces
    scores = _scores(_b0(), x, precision)
    assert len(np.unique(scores)) == 64


def test_efficientnet_pytorch_defaults_collapse_in_eval_mode(faces64):
    """The cause, reproduced with the library's own defaults: one constant score."""
    from efficientnet_pytorch import EfficientNet

    torch.manual_seed(0)
    net = EfficientNet.from_name("efficientnet-b0").eval()
    x, _ = faces64
    with torch.no_grad():
        features = net.extract_features(x).mean(dim=(2, 3))
    assert features.std(0).max() < 1e-4  # every face gives (nearly) the same feature vector
    with torch.no_grad():
        ours = build_detector(DetectorModelConfig(backbone="efficientnet-b0")).backbone.eval()(x)
    assert ours.std(0).mean() > 100 * features.std(0).mean()


@pytest.fixture(scope="module")
def trained_b0(faces64):
    """B0 after four Adam steps on the faces (fp32 training: bf16 autocast on CPU is ~25x
    slower; the precision that makes ties is the scoring one, tested below)."""
    x, y = faces64
    model = _b0()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(4):
        idx = torch.randperm(64, generator=gen)[:16]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x[idx]), y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_briefly_trained_b0_gives_64_distinct_scores(faces64, trained_b0, precision):
    x, _ = faces64
    scores = _scores(trained_b0, x, precision)
    assert len(np.unique(scores)) == 64
    assert scores.std() > 1e-4


def test_tie_check():
    assert all_scores_tie([0.3, 0.3, 0.3])
    assert not all_scores_tie([0.3, 0.3, 0.30001])
    assert not all_scores_tie([0.5])
    with pytest.warns(ScoreTieWarning, match="all 3 validation scores are identical"):
        assert warn_if_scores_tie(np.full(3, 0.25))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not warn_if_scores_tie([0.1, 0.2])


def test_training_warns_when_all_validation_scores_tie(tmp_path):
    """A real training run whose validation faces are one and the same image: every
    validation score ties, and the trainer says so."""
    from datasets_builders.synthetic import write_synthetic_mri_df

    root = write_synthetic_mri_df(tmp_path / "syn", n_faces=8, size=32, seed=2,
                                  val_fraction=0.5)
    rows = read_manifest(root)
    val = [r for r in rows if r["split"] == "val"]
    assert {r["label"] for r in val} == {"real", "fake"}
    for r in val:
        r["image"] = val[0]["image"]
    write_manifest(root, rows)
    cfg = DetectorConfig(name="tie", out_dir=str(tmp_path / "runs"),
                         model=DetectorModelConfig(backbone="tiny-cnn"),
                         data=DetectorDataConfig(root=str(root), image_size=32, workers=0),
                         train=DetectorTrainConfig(epochs=1, max_steps=2, batch_size=4, device="cpu",
                                           precision="fp32", augment=()))
    with pytest.warns(ScoreTieWarning, match="validation scores are identical"):
        result = train_detector(cfg, log=lambda *a, **k: None)
    assert result.history[-1]["auc"] == 0.5


def test_training_does_not_warn_on_distinct_validation_faces(tmp_path):
    from datasets_builders.synthetic import write_synthetic_mri_df

    root = write_synthetic_mri_df(tmp_path / "syn", n_faces=8, size=32, seed=2,
                                  val_fraction=0.5)
    cfg = DetectorConfig(name="fine", out_dir=str(tmp_path / "runs"),
                         model=DetectorModelConfig(backbone="tiny-cnn"),
                         data=DetectorDataConfig(root=str(root), image_size=32, workers=0),
                         train=DetectorTrainConfig(epochs=1, max_steps=2, batch_size=4, device="cpu",
                                           precision="fp32", augment=()))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ScoreTieWarning)
        train_detector(cfg, log=lambda *a, **k: None)


