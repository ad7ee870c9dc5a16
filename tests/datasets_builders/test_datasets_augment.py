"""Augmentation plans: seeded, JSON round trip, applied identically to a fake and its original."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.util import random_noise

from datasets_builders.augment import (
    AUGMENTATIONS,
    NOISE_MODES,
    PlanRunner,
    add_noise,
    load_plan,
    make_plan,
    plan_label,
    save_plan,
)
from datasets_builders.distractions import draw_distraction, position
from mrigan import perceptual
from mrigan.fileio import read_image

PAPER_AUGMENTATIONS = {"noise", "blur", "rotation", "flip", "rescale", "brightness", "contrast"}


@pytest.fixture(scope="module")
def pair(ff_examples):
    real = read_image(ff_examples / "ex_original.png")[::2, ::2].copy()
    fake = read_image(ff_examples / "ex_deepfakes.png")[::2, ::2].copy()
    mask = read_image(ff_examples / "ex_deepfakes_mask.png")[::2, ::2, 0] > 127
    return real, fake, mask


def test_plans_are_seeded_and_cover_the_paper(tmp_path):
    assert set(AUGMENTATIONS.names()) == PAPER_AUGMENTATIONS
    a = make_plan(7, "ffpp/original/519", augment_fraction=1.0, distraction_fraction=1.0)
    assert a == make_plan(7, "ffpp/original/519", augment_fraction=1.0, distraction_fraction=1.0)
    assert a != make_plan(8, "ffpp/original/519", augment_fraction=1.0, distraction_fraction=1.0)
    save_plan(tmp_path / "p.json", a)
    assert load_plan(tmp_path / "p.json") == a
    plans = [make_plan(0, f"v{i}", augment_fraction=0.3, distraction_fraction=0.2) for i in range(400)]
    share_aug = np.mean([p["augmentation"] is not None for p in plans])
    share_dis = np.mean([p["distraction"] is not None for p in plans])
    assert 0.24 < share_aug < 0.36 and 0.15 < share_dis < 0.25
    names = {p["augmentation"]["name"] for p in plans if p["augmentation"]}
    assert names == PAPER_AUGMENTATIONS
    texts = [p["distraction"]["text"] for p in plans if p["distraction"] and p["distraction"]["kind"] == "text"]
    assert texts and all(len(t) == 8 for t in texts)
    assert plan_label(None) == "none"


@pytest.mark.parametrize("name", sorted(PAPER_AUGMENTATIONS - {"flip", "rotation"}))
def test_identical_application_keeps_the_mri_on_the_manipulation(pair, name):
    real, fake, mask = pair
    for seed in range(2):
        plan = make_plan(seed, f"video-{name}", augment_fraction=1.0, distraction_fraction=1.0,
                         augmentations=(name,))
        runner = PlanRunner(plan)
        aug_real, aug_fake = runner(real, 30), runner(fake, 30)
        assert not np.array_equal(aug_real, real)
        np.testing.assert_array_equal(runner(real, 30), aug_real)  # deterministic per frame
        mri = perceptual.mri_map_np(aug_real, aug_fake).mean(axis=2)
        inside, outside = mri[mask].mean(), mri[~mask].mean()
        assert inside > 5 * outside, (plan_label(plan), inside, outside)


def test_independent_noise_would_leak_into_the_mri(pair):
    real, fake, mask = pair
    plan = {"seed": 1, "augmentation": {"name": "noise", "mode": "gaussian", "var": 0.005, "amount": 0.01}}
    runner = PlanRunner(plan)
    same = perceptual.mri_map_np(runner(real, 0), runner(fake, 0)).mean(axis=2)
    other = perceptual.mri_map_np(runner(real, 0), runner(fake, 1)).mean(axis=2)
    assert other[~mask].mean() > 5 * same[~mask].mean()


def test_flip_commutes_with_the_mri(pair):
    real, fake, _ = pair
    runner = PlanRunner({"seed": 0, "augmentation": {"name": "flip"}})
    np.testing.assert_array_equal(runner(real, 0), real[:, ::-1])
    flipped = perceptual.mri_map_np(runner(real, 0), runner(fake, 0))
    np.testing.assert_allclose(flipped, perceptual.mri_map_np(real, fake)[:, ::-1], atol=1e-5)


def test_noise_modes_match_scikit_image_statistics():
    grey = np.full((200, 200, 3), 128, np.uint8)
    gauss = add_noise(grey, {"mode": "gaussian", "var": 0.004}, seed=3).astype(float) / 255
    assert abs((gauss - 128 / 255).var() - 0.004) < 0.0005
    ref = random_noise(grey.astype(float) / 255, mode="gaussian", var=0.004, rng=3)
    np.testing.assert_array_equal(gauss, np.rint(ref * 255) / 255)
    salt = add_noise(grey, {"mode": "salt", "amount": 0.05}, seed=0)
    assert abs((salt == 255).mean() - 0.05) < 0.01 and (salt == 0).sum() == 0
    pepper = add_noise(grey, {"mode": "pepper", "amount": 0.05}, seed=0)
    assert abs((pepper == 0).mean() - 0.05) < 0.01
    for mode in NOISE_MODES:
        out = add_noise(grey, {"mode": mode, "var": 0.004, "amount": 0.02}, seed=1)
        assert out.dtype == np.uint8 and out.shape == grey.shape and not np.array_equal(out, grey)


def test_distraction_motions():
    frame = np.zeros((90, 160, 3), np.uint8)
    base = {"kind": "circle", "color": [255, 0, 0], "size": 0.1, "thickness": -1, "x": 0.5, "y": 0.5}
    static = {**base, "motion": "static"}
    assert position(static, 0, 1) == position(static, 99, 1) == (0.5, 0.5)
    rolling = {**base, "motion": "rolling", "direction": "left", "speed": 0.01}
    assert position(rolling, 10, 1) == pytest.approx((0.4, 0.5))
    assert position(rolling, 60, 1) == pytest.approx((0.9, 0.5))  # wraps around
    down = {**rolling, "direction": "down"}
    assert position(down, 10, 1) == pytest.approx((0.5, 0.6))
    spont = {**base, "motion": "spontaneous", "show_probability": 0.5}
    seen = [position(spont, i, 5) for i in range(100)]
    assert seen == [position(spont, i, 5) for i in range(100)]
    assert 30 < sum(p is None for p in seen) < 70 and len({p for p in seen if p}) > 30
    drawn = draw_distraction(frame, static, 0, 1)
    assert drawn[45, 80].tolist() == [255, 0, 0] and frame.max() == 0  # input untouched
    text = {"kind": "text", "text": "Ab3dE6gH", "color": [0, 255, 0], "size": 1.0, "thickness": 2,
            "motion": "static", "x": 0.5, "y": 0.5}
    big = np.zeros((720, 1280, 3), np.uint8)
    ink = draw_distraction(big, text, 0, 1)[..., 1] > 0
    ys, xs = np.nonzero(ink)
    assert ink.sum() > 1000 and abs(xs.mean() - 640) < 60 and abs(ys.mean() - 360) < 30
