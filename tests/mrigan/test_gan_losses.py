"""MRI-GAN objectives on hand-made inputs, and the SSIM term against scikit-image."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from mrigan.losses import GanLossConfig, discriminator_loss, generator_loss


def _const(value: float, shape=(2, 3, 16, 16)) -> torch.Tensor:
    return torch.full(shape, value)


def test_lsgan_terms_by_hand():
    d_fake = torch.tensor([[[[0.0, 0.5], [1.0, 2.0]]]])  # (1, 1, 2, 2) patch scores
    g = generator_loss(d_fake, _const(0.5), _const(0.5))
    # generator wants every patch at 1: ((1)^2 + 0.5^2 + 0 + 1^2) / 4
    assert float(g["gan"]) == pytest.approx(2.25 / 4)
    d = discriminator_loss(torch.tensor([[[[1.0, 0.0]]]]), torch.tensor([[[[0.0, 3.0]]]]))
    assert float(d["real"]) == pytest.approx(0.5)  # (0 + 1) / 2
    assert float(d["fake"]) == pytest.approx(4.5)  # (0 + 9) / 2
    assert float(d["total"]) == pytest.approx(0.5 * (0.5 + 4.5))


def test_perfect_discriminator_and_eta():
    ones, zeros = torch.ones(3, 1, 4, 4), torch.zeros(3, 1, 4, 4)
    assert float(discriminator_loss(ones, zeros)["total"]) == 0.0
    assert float(discriminator_loss(zeros, ones)["total"]) == pytest.approx(1.0)
    assert float(discriminator_loss(zeros, ones, GanLossConfig(eta=2.0))["total"]) == pytest.approx(4.0)


def test_pixel_terms_l2_and_l1_by_hand():
    fake, true = _const(0.25), _const(0.75)
    d = torch.ones(2, 1, 1, 1)
    assert float(generator_loss(d, fake, true)["pixel"]) == pytest.approx(0.25)
    assert float(generator_loss(d, fake, true, GanLossConfig(pixel="l1"))["pixel"]) == pytest.approx(0.5)


def test_total_is_gan_plus_lambda_tau_mix():
    rng = torch.Generator().manual_seed(0)
    fake = torch.rand(2, 3, 24, 24, generator=rng)
    true = torch.rand(2, 3, 24, 24, generator=rng)
    d_fake = torch.rand(2, 1, 3, 3, generator=rng)
    cfg = GanLossConfig(lambda_recon=100.0, tau=0.3)
    t = generator_loss(d_fake, fake, true, cfg)
    gan = float(((d_fake - 1) ** 2).mean())
    l2 = float(((fake - true) ** 2).mean())
    assert float(t["gan"]) == pytest.approx(gan, rel=1e-6)
    assert float(t["pixel"]) == pytest.approx(l2, rel=1e-6)
    expected = gan + 100.0 * (0.3 * l2 + 0.7 * float(t["ssim"]))
    assert float(t["total"]) == pytest.approx(expected, rel=1e-6)


def test_ssim_term_matches_scikit_image_on_unit_range():
    rng = np.random.default_rng(0)
    true = rng.random((2, 3, 32, 32)).astype(np.float32)
    fake = np.clip(true + rng.normal(0, 0.2, true.shape), 0, 1).astype(np.float32)
    maps = [structural_similarity(true[i].transpose(1, 2, 0), fake[i].transpose(1, 2, 0),
                                  channel_axis=-1, data_range=1.0, gaussian_weights=True,
                                  sigma=1.5, use_sample_covariance=False, full=True)[1]
            for i in range(2)]
    expected = math.sqrt(1.0 - float(np.mean(maps)))
    got = generator_loss(torch.ones(2, 1, 1, 1), torch.from_numpy(fake), torch.from_numpy(true))
    assert float(got["ssim"]) == pytest.approx(expected, abs=2e-4)


def test_identical_mris_have_zero_reconstruction_loss_and_finite_gradient():
    true = torch.rand(1, 3, 20, 20)
    fake = true.clone().requires_grad_(True)
    t = generator_loss(torch.ones(1, 1, 2, 2), fake, true)
    assert float(t["pixel"].detach()) == 0.0
    assert float(t["ssim"].detach()) == pytest.approx(0.0, abs=1e-6)
    t["total"].backward()
    assert torch.isfinite(fake.grad).all()


def test_losses_stay_float32_under_bf16_autocast():
    rng = torch.Generator().manual_seed(1)
    fake, true = torch.rand(1, 3, 24, 24, generator=rng), torch.rand(1, 3, 24, 24, generator=rng)
    d = torch.rand(1, 1, 3, 3, generator=rng)
    plain = generator_loss(d, fake, true)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = generator_loss(d, fake, true)
    for k in plain:
        assert mixed[k].dtype == torch.float32
        assert float(mixed[k]) == pytest.approx(float(plain[k]), rel=1e-6)


def test_vanilla_gan_option_and_bad_config():
    zero = torch.zeros(1, 1, 2, 2)
    t = generator_loss(zero, _const(0.5), _const(0.5), GanLossConfig(gan="vanilla"))
    assert float(t["gan"]) == pytest.approx(math.log(2.0))
    with pytest.raises(ValueError, match="tau"):
        GanLossConfig(tau=1.5)
    with pytest.raises(KeyError, match="known: l1, l2"):
        GanLossConfig(pixel="huber")


def test_recipe_options_ssim_on_fakes_and_weighted_manipulated_pixels():
    """Issue 21's recipe options, by hand: ``ssim_on: fakes`` leaves the real face (black true
    MRI) out of the SSIM term; ``manipulated_weight`` weighs pixels whose true MRI > 0.1."""
    from mrigan import perceptual

    rng = torch.Generator().manual_seed(0)
    true = torch.zeros(2, 3, 24, 24)
    true[0, :, 4:12, 4:12] = 0.6  # sample 0 is a fake with a manipulated square; 1 is real
    fake = (true + 0.2 * torch.rand(2, 3, 24, 24, generator=rng)).clamp(0, 1)
    d = torch.ones(2, 1, 1, 1)
    both = generator_loss(d, fake, true)
    fakes_only = generator_loss(d, fake, true, GanLossConfig(ssim_on="fakes"))
    expected = perceptual.ssim_loss(fake[:1], true[:1], data_range=1.0)
    assert float(fakes_only["ssim"]) == pytest.approx(float(expected), rel=1e-6)
    assert float(both["ssim"]) != pytest.approx(float(expected), rel=1e-3)
    assert float(generator_loss(d, fake[1:], true[1:], GanLossConfig(ssim_on="fakes"))["ssim"]) == 0
    # weighted pixel term: weight 1 + w inside the square, 1 elsewhere, normalised
    w = 4.0
    weights = torch.ones_like(true)
    weights[0, :, 4:12, 4:12] += w
    err = (fake - true) ** 2
    weighted = generator_loss(d, fake, true, GanLossConfig(manipulated_weight=w))
    assert float(weighted["pixel"]) == pytest.approx(float((err * weights).sum() / weights.sum()),
                                                     rel=1e-6)
    assert float(generator_loss(d, fake, true, GanLossConfig(manipulated_weight=0.0))["pixel"]) \
        == pytest.approx(float(err.mean()), rel=1e-6)
    with pytest.raises(Exception, match="ssim_on"):
        GanLossConfig(ssim_on="reals")
