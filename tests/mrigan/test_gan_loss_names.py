"""The GAN loss names say what they are: ``bce`` = the paper's Eq. 9 (log cGAN loss),
``lsgan`` = the released code's least squares; both against NumPy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mrigan.losses import GAN_LOSSES, GanLossConfig, discriminator_loss


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -x)


def test_bce_is_the_log_cgan_loss_of_eq_9():
    rng = np.random.default_rng(0)
    real, fake = rng.normal(1, 2, (2, 1, 5, 5)), rng.normal(-1, 2, (2, 1, 5, 5))
    bce = GAN_LOSSES.get("bce")
    # E[log D(y|x)] + E[log(1 - D(G(x)|x))], D = sigmoid(logit); the losses are the negatives
    assert float(bce(torch.tensor(real), True)) == pytest.approx(-_log_sigmoid(real).mean())
    assert float(bce(torch.tensor(fake), False)) == pytest.approx(-_log_sigmoid(-fake).mean())
    d = discriminator_loss(torch.tensor(real), torch.tensor(fake), GanLossConfig(gan="bce"))
    eq9 = _log_sigmoid(real).mean() + _log_sigmoid(-fake).mean()
    assert float(d["total"]) == pytest.approx(-0.5 * eq9)
    assert GAN_LOSSES.get("vanilla") is bce


def test_lsgan_is_least_squares_and_the_default():
    rng = np.random.default_rng(1)
    p = rng.normal(0.5, 1, (3, 1, 4, 4))
    ls = GAN_LOSSES.get("lsgan")
    assert float(ls(torch.tensor(p), True)) == pytest.approx(((p - 1) ** 2).mean())
    assert float(ls(torch.tensor(p), False)) == pytest.approx((p**2).mean())
    assert GanLossConfig().gan == "lsgan"
    assert float(ls(torch.tensor(p), True)) != pytest.approx(
        float(GAN_LOSSES.get("bce")(torch.tensor(p), True)), rel=1e-3)
