"""MRI-GAN objectives.

Generator:     L_G = L_cGAN(D(G(x), x), 1) + lambda * (tau * L_pix + (1 - tau) * sqrt(1 - SSIM))
Discriminator: L_D = eta * (L_cGAN(D(y, x), 1) + L_cGAN(D(G(x), x), 0))

with lambda = 100, tau = 0.3, eta = 0.5 (the paper). ``L_pix`` is L2 (paper) or L1 (the paper's
suggested next step).

The adversarial loss ``L_cGAN`` is chosen by name (``GanLossConfig.gan``), and the two candidates
are NOT the same thing:

* ``bce`` - the paper's Eq. 9, the log cGAN loss of Mirza & Osindero,
  ``E[log D(y|x)] + E[log(1 - D(G(x)|x))]``, written as binary cross-entropy on the
  discriminator's logits (the generator uses the non-saturating form, target "real").
  ``vanilla`` is another name for it.
* ``lsgan`` (default) - the least-squares loss that the paper's released code
  (github.com/pratikpv/mri_gan_deepfake) trains with; the default because the published model
  was trained with it, not because the paper's text describes it.

Recipe options (issue 21, each a named config option; the defaults are the paper's):

* ``ssim_on``: ``all`` (paper) or ``fakes``: the SSIM term over the fakes of the batch only. A
  real face's true MRI is black, and SSIM against a black map pulls the whole output to black.
  A fake is told apart by its true MRI, which is not black (MRI-DF: real = black map).
* ``manipulated_weight``: w >= 0 gives the pixel term weight ``1 + w`` on manipulated pixels
  (true MRI, mean over channels, > ``mrigan.localization.MASK_THRESHOLD``) and 1 elsewhere,
  normalised by the weights' sum: the few bright pixels of a fake otherwise weigh as little as
  the black background (paper: 0).

Every reconstruction term is computed on the [0, 1] MRI scale, in float32 even under autocast,
with SSIM's data range given explicitly (1.0). Note: the paper's code took its L2 on the
[-1, 1] tanh scale, which is 4x the [0, 1] value; SSIM is scale-free given the matching data
range, so only the pixel term's weight differs from that code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from mrigan import perceptual
from mrigan.config import Checked, bounds
from mrigan.fingerprint import added_later
from mrigan.localization import MASK_THRESHOLD
from mrigan.registry import Registry

PIXEL_LOSSES = Registry("pixel loss")
GAN_LOSSES = Registry("GAN loss")

PIXEL_LOSSES.register("l2", F.mse_loss)
PIXEL_LOSSES.register("l1", F.l1_loss)


@GAN_LOSSES.register("lsgan")
def lsgan_loss(prediction: torch.Tensor, target_is_real: bool) -> torch.Tensor:
    """Least-squares GAN (the released code's loss; not the paper's Eq. 9): mean squared
    distance of every patch score to 1 (real) or 0 (fake)."""
    target = 1.0 if target_is_real else 0.0
    return F.mse_loss(prediction.float(), torch.full_like(prediction, target, dtype=torch.float32))


@GAN_LOSSES.register("bce")
@GAN_LOSSES.register("vanilla")
def vanilla_gan_loss(prediction: torch.Tensor, target_is_real: bool) -> torch.Tensor:
    """The paper's Eq. 9 (log cGAN loss) on patch logits: binary cross-entropy against 1 (real)
    or 0 (fake), i.e. ``-mean(log sigmoid(p))`` or ``-mean(log(1 - sigmoid(p)))``."""
    target = torch.full_like(prediction, 1.0 if target_is_real else 0.0, dtype=torch.float32)
    return F.binary_cross_entropy_with_logits(prediction.float(), target)


@dataclass(frozen=True)
class GanLossConfig(Checked):
    """Weights of the MRI-GAN objective (defaults: the paper)."""

    lambda_recon: float = 100.0  # lambda: weight of the reconstruction terms
    #: share of the pixel term in the reconstruction (1 - tau: SSIM term)
    tau: float = field(default=0.3, metadata=bounds(minimum=0.0, maximum=1.0))
    eta: float = 0.5  # discriminator loss scale
    pixel: str = "l2"  # l2 (paper) or l1
    gan: str = "lsgan"  # lsgan (the released code; default) | bce (the paper's Eq. 9) = vanilla
    #: the SSIM term over all faces (paper) or the batch's fakes only (module doc)
    ssim_on: str = field(default="all", metadata={**bounds(choices=("all", "fakes")),
                                                  **added_later("all")})
    #: extra pixel-term weight of manipulated pixels (module doc; 0: the paper's plain mean)
    manipulated_weight: float = field(default=0.0, metadata={**bounds(minimum=0.0),
                                                               **added_later(0.0)})

    def __post_init__(self) -> None:
        super().__post_init__()
        PIXEL_LOSSES.get(self.pixel)  # fail early on unknown names, listing the known ones
        GAN_LOSSES.get(self.gan)


def _no_autocast(device_type: str):
    return torch.autocast(device_type=device_type, enabled=False)


def _pixel_term(fake: torch.Tensor, true: torch.Tensor, cfg: GanLossConfig) -> torch.Tensor:
    loss = PIXEL_LOSSES.get(cfg.pixel)
    if not cfg.manipulated_weight:
        return loss(fake, true)
    manipulated = (true.mean(1, keepdim=True) > MASK_THRESHOLD).float()
    weights = (1.0 + cfg.manipulated_weight * manipulated).expand_as(true)
    return (loss(fake, true, reduction="none") * weights).sum() / weights.sum()


def generator_loss(d_fake: torch.Tensor, fake_mri: torch.Tensor, true_mri: torch.Tensor,
                   cfg: GanLossConfig = GanLossConfig()) -> dict[str, torch.Tensor]:
    """Generator objective. ``fake_mri``/``true_mri`` are (N, 3, H, W) in [0, 1].

    Returns ``{"total", "gan", "pixel", "ssim"}``; ``ssim`` is the ``sqrt(1 - SSIM)`` term.
    """
    with _no_autocast(fake_mri.device.type):
        fake, true = fake_mri.float(), true_mri.float()
        gan = GAN_LOSSES.get(cfg.gan)(d_fake, True)
        pixel = _pixel_term(fake, true, cfg)
        ssim = pixel.new_zeros(())
        if cfg.tau < 1.0:
            if cfg.ssim_on == "fakes":
                fakes = true.flatten(1).amax(1) > 0  # a real face's true MRI is black
                if bool(fakes.any()):
                    ssim = perceptual.ssim_loss(fake[fakes], true[fakes], data_range=1.0)
            else:
                ssim = perceptual.ssim_loss(fake, true, data_range=1.0)
        total = gan + cfg.lambda_recon * (cfg.tau * pixel + (1.0 - cfg.tau) * ssim)
    return {"total": total, "gan": gan, "pixel": pixel, "ssim": ssim}


def discriminator_loss(d_real: torch.Tensor, d_fake: torch.Tensor,
                       cfg: GanLossConfig = GanLossConfig()) -> dict[str, torch.Tensor]:
    """Discriminator objective on patch scores of (true MRI, face) and (generated MRI, face).

    Returns ``{"total", "real", "fake"}``.
    """
    gan = GAN_LOSSES.get(cfg.gan)
    real, fake = gan(d_real, True), gan(d_fake, False)
    return {"total": cfg.eta * (real + fake), "real": real, "fake": fake}
