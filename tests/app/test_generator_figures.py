"""Held-out figures of generators (issue 21 goals 3-4): the mask AUC and the per-video mean
AUC equal scikit-learn's on small cases; on the real FF++ example frames the face crop keeps
the manipulation mask, the true MRI localizes it and the constant maps cannot."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from datasets_builders.face_boxes import crop_face
from datasets_builders.faces import FaceDetectionConfig
from mrigan import perceptual
from mrigan.app.benchmark.generator_figures import (
    EXAMPLES,
    example_faces,
    example_figures,
    mask_auc,
    video_mean_auc,
)
from mrigan.fileio import read_image


@pytest.mark.parametrize("seed", range(3))
def test_mask_auc_equals_scikit_learn_and_averages_channels(seed):
    rng = np.random.default_rng(seed)
    maps = rng.integers(0, 5, (2, 9, 7, 3)).astype(float)  # ties
    masks = rng.random((2, 9, 7)) > 0.6
    expected = roc_auc_score(masks.ravel(), maps.mean(-1).ravel())
    assert mask_auc(maps, masks) == pytest.approx(expected, abs=1e-12)
    assert mask_auc(maps.mean(-1), masks) == pytest.approx(expected, abs=1e-12)
    assert mask_auc(np.full((9, 7), 0.3), masks[0]) == 0.5  # a constant map
    with pytest.raises(ValueError, match="differ"):
        mask_auc(maps[0, :8], masks[0])


def test_video_mean_auc_is_scikit_learns_on_each_videos_mean(tmp_path):
    rng = np.random.default_rng(0)
    rows, y, means = [], [], []
    for v in range(12):
        fake = v % 3 != 0
        scores = rng.random(int(rng.integers(1, 5))) + 0.3 * fake
        rows += [{"video": f"v{v}", "label": "fake" if fake else "real", "p_fake": s}
                 for s in scores]
        y.append(fake)
        means.append(scores.mean())
    path = tmp_path / "test_faces.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, ["video", "label", "p_fake"])
        w.writeheader()
        w.writerows(rows)
    got = video_mean_auc(path, n_boot=200)
    assert got["auc"] == pytest.approx(roc_auc_score(y, means))
    assert got["videos"] == 12 and got["fake_videos"] == 8
    assert got["ci95"][0] <= got["auc"] <= got["ci95"][1]


@pytest.fixture(scope="module")
def examples(ff_examples):
    return example_faces(ff_examples, 128)


def test_example_crops_keep_the_mask_and_the_true_mri_localizes_it(examples, ff_examples):
    assert set(examples) == set(EXAMPLES)
    for e in examples.values():
        assert e["face"].shape == (128, 128, 3) and e["face"].dtype == np.uint8
        assert e["mask"].shape == (128, 128)
        assert 0.05 < e["mask"].mean() < 0.95  # the manipulated region lies in the face crop
    # the true MRI of the Deepfakes crop (1 - SSIM against the same crop of the original):
    # crop the original the same way through a "generator" that returns it
    ex = examples["deepfakes"]
    original = example_faces_original(ff_examples)
    true = perceptual.mri_map(_t(original), _t(ex["face"]), data_range=1.0)[0]
    assert mask_auc(true.permute(1, 2, 0).numpy(), ex["mask"]) > 0.8
    # through example_figures: a predictor returning black maps scores chance on both
    black = example_figures(lambda faces: [np.zeros((128, 128, 3)) for _ in faces], examples)
    assert black == {n: 0.5 for n in EXAMPLES}


def _t(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255


def example_faces_original(ff_examples):
    """The original frame cut like the fakes (a mask-free copy of example_faces' crop)."""
    cfg = FaceDetectionConfig(device="cpu")
    frame = read_image(ff_examples / "ex_original.png")
    box = cfg.detector().detect([frame])[0][0]
    return crop_face(frame, box, cfg.margin, 128)
