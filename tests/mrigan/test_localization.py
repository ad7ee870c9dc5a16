"""Localization figures (issue 21 goal 3): scikit-learn's AUC on small cases, and on the real
FaceForensics++ example pair what the true map, the all-black map and the mean map score."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from mrigan import perceptual
from mrigan.fileio import read_image
from mrigan.localization import localization_figures, mean_fake_map, roc_auc


@pytest.mark.parametrize("seed", range(4))
def test_roc_auc_equals_scikit_learn_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 60)
    s = rng.integers(0, 6, 60).astype(float)  # many ties
    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert math.isnan(roc_auc(np.ones(5), np.arange(5.0)))


def _tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img).permute(2, 0, 1).float() / 255


@pytest.fixture(scope="module")
def faces(ff_examples):
    """Four 96 px crops of the real FF++ pair: 2 fakes (Deepfakes) with their true MRIs and the
    2 same crops of the original, whose true MRIs are black."""
    real = _tensor(read_image(ff_examples / "ex_original.png"))
    fake = _tensor(read_image(ff_examples / "ex_deepfakes.png"))
    mask = read_image(ff_examples / "ex_deepfakes_mask.png")
    ys, xs = np.nonzero(mask.reshape(mask.shape[0], mask.shape[1], -1).max(-1) > 0)
    cy, cx = int(ys.mean()), int(xs.mean())
    crops = [(cy - 60, cx - 60), (cy - 36, cx - 30)]
    r = torch.stack([real[:, y:y + 96, x:x + 96] for y, x in crops])
    f = torch.stack([fake[:, y:y + 96, x:x + 96] for y, x in crops])
    mri = perceptual.mri_map(r, f, data_range=1.0)
    images = torch.cat([f, r])
    true = torch.cat([mri, torch.zeros_like(mri)])
    labels = torch.tensor([1, 1, 0, 0])
    return images, true, labels


def test_the_true_map_wins_and_constant_maps_cannot(faces):
    _, true, labels = faces
    mean_map = mean_fake_map(true, labels)
    assert mean_map.shape == true.shape[1:]
    fig = localization_figures(true, true, labels, mean_map=mean_map)
    assert fig["pixel_auc"] == 1.0 and fig["face_auc"] == 1.0 and fig["fake_ssim"] == 1.0
    assert fig["select"] == 1.0 and fig["real_mean"] == 0.0
    # all-black: chance everywhere; the mean map localizes (its pixels follow the face's mask)
    # but gives every face the same score: face AUC exactly 0.5
    assert fig["black_pixel_auc"] == 0.5 and fig["black_face_auc"] == 0.5
    assert fig["mean_map_face_auc"] == 0.5 and fig["mean_map_pixel_auc"] > 0.7
    assert fig["mean_map_select"] < fig["select"] and fig["black_select"] == 0.5
    # the figures are scikit-learn's
    mask = (true[:2].mean(1) > 0.1).flatten().numpy()
    assert fig["mean_map_pixel_auc"] == pytest.approx(
        roc_auc_score(mask, mean_map.mean(0).expand(2, -1, -1).flatten().numpy()))
    expected_ssim = perceptual.mean_ssim(torch.zeros_like(true[:2]), true[:2],
                                         data_range=1.0).mean()
    assert fig["black_fake_ssim"] == pytest.approx(float(expected_ssim))


def test_a_map_that_lights_reals_or_the_wrong_place_loses(faces):
    _, true, labels = faces
    flipped = true.flip(-1).flip(-2)  # bright in the wrong place
    wrong = localization_figures(flipped, true, labels)
    assert wrong["pixel_auc"] < 0.6
    everywhere = localization_figures(torch.full_like(true, 0.3), true, labels)
    assert everywhere["face_auc"] == 0.5 and everywhere["real_mean"] == pytest.approx(0.3)
    with pytest.raises(ValueError, match="expected"):
        localization_figures(true[:, :1], true, labels)
    with pytest.raises(ValueError, match="no fake"):
        mean_fake_map(true[2:], labels[2:])
