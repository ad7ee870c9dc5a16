"""Paired (face, MRI) augmentation for GAN training, on device, with kornia.

An MRI is a per-pixel map of *where* a face was manipulated, so every geometric change of the
face (flip, rotation/shift/zoom, crop) must move its MRI the same way, and photometric changes
(colour jitter, sensor noise) must touch the face only: they do not move the artifact, so the
true MRI is unchanged. Geometric ops run in one ``kornia.augmentation.AugmentationSequential``
with ``data_keys=["input", "input"]``, which draws the parameters once and applies them to both
tensors.

Padding: pixels brought in from outside the image are 0 in the MRI ("no artifact") and 0 in the
face as well. Reflection padding of the face was rejected: it mirrors blended regions into the
border, where the MRI says "no artifact", i.e. it would train the generator on wrong labels;
a black border carries no artifact and agrees with its MRI.

Randomness: kornia draws from the *global* torch RNG. :func:`build_paired_augment`'s callable
forks it (``torch.random.fork_rng``), seeds the fork from the ``torch.Generator`` it is given and
restores it afterwards, so dropout and everything else the trainer draws are unaffected. The
trainer passes :func:`step_generator` (seed, rank, step): a pure function of the step, so a
resumed run augments exactly as an uninterrupted one without any extra checkpoint state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from mrigan.config import Checked, bounds

PairedAugment = Callable[[torch.Tensor, torch.Tensor, torch.Generator],
                         tuple[torch.Tensor, torch.Tensor]]


#: a per-sample probability
_P = bounds(minimum=0.0, maximum=1.0)
#: a strength that cannot be negative
_NONNEG = bounds(minimum=0.0)


@dataclass(frozen=True)
class PairedAugmentConfig(Checked):
    """Training-time augmentation of (face, MRI) pairs; off by default (the paper has none).

    Every ``*_p`` is the per-sample probability of that op; 0 removes it. Ranges are
    ``bounds`` metadata, checked from YAML and when built directly.
    """

    enabled: bool = False
    hflip_p: float = field(default=0.5, metadata=_P)
    # small random affine: rotation in degrees (+-), translation as a fraction of the size,
    # isotropic scale range
    affine_p: float = field(default=0.0, metadata=_P)
    degrees: float = field(default=10.0, metadata=bounds(minimum=0.0, maximum=180.0))
    translate: tuple[float, float] = (0.05, 0.05)
    scale: tuple[float, float] = (0.95, 1.05)
    # random resized crop: area fraction range, aspect ratio range, resized back to the input size
    crop_p: float = field(default=0.0, metadata=_P)
    crop_scale: tuple[float, float] = (0.8, 1.0)
    crop_ratio: tuple[float, float] = (0.9, 1.1)
    # face only
    jitter_p: float = field(default=0.0, metadata=_P)
    brightness: float = field(default=0.1, metadata=_NONNEG)
    contrast: float = field(default=0.1, metadata=_NONNEG)
    saturation: float = field(default=0.1, metadata=_NONNEG)
    hue: float = field(default=0.02, metadata=bounds(minimum=0.0, maximum=0.5))  # kornia's range
    noise_p: float = field(default=0.0, metadata=_P)
    noise_std: float = field(default=0.02, metadata=_NONNEG)


def step_generator(seed: int, step: int, rank: int = 0) -> torch.Generator:
    """A CPU generator seeded from (seed, rank, step): each training step of each process gets
    its own independent stream, reproducible from the step number alone (so resume is exact)."""
    state = np.random.SeedSequence([seed, rank, step]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def _identity(faces: torch.Tensor, mris: torch.Tensor,
              generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    return faces, mris


def build_paired_augment(cfg: PairedAugmentConfig, image_size: int) -> PairedAugment:
    """A callable ``(faces, mris, generator) -> (faces, mris)`` on (N, 3, H, W) tensors in
    [0, 1] (H = W = ``image_size``, any device); the identity when ``cfg.enabled`` is false."""
    if not cfg.enabled:
        return _identity
    import kornia.augmentation as K

    geometric = []
    if cfg.hflip_p > 0:
        geometric.append(K.RandomHorizontalFlip(p=cfg.hflip_p))
    if cfg.affine_p > 0:
        geometric.append(K.RandomAffine(degrees=cfg.degrees, translate=cfg.translate,
                                        scale=cfg.scale, padding_mode="zeros", p=cfg.affine_p))
    if cfg.crop_p > 0:
        geometric.append(K.RandomResizedCrop((image_size, image_size), scale=cfg.crop_scale,
                                             ratio=cfg.crop_ratio, p=cfg.crop_p))
    photometric = []
    if cfg.jitter_p > 0:
        photometric.append(K.ColorJitter(cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue,
                                         p=cfg.jitter_p))
    if cfg.noise_p > 0:
        photometric.append(K.RandomGaussianNoise(mean=0.0, std=cfg.noise_std, p=cfg.noise_p))
    paired = K.AugmentationSequential(*geometric, data_keys=["input", "input"]) if geometric \
        else None
    face_only = K.AugmentationSequential(*photometric) if photometric else None

    def augment(faces: torch.Tensor, mris: torch.Tensor,
                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        if faces.shape != mris.shape or faces.shape[-2:] != (image_size, image_size):
            raise ValueError(f"paired augment: faces {tuple(faces.shape)} and MRIs "
                             f"{tuple(mris.shape)} must both be (N, C, {image_size}, "
                             f"{image_size})")
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        devices = [faces.device] if faces.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(seed)
            if paired is not None:
                faces, mris = paired(faces, mris)
            if face_only is not None:
                faces = face_only(faces)
        # bilinear resampling of [0, 1] stays in [0, 1] up to rounding; noise does not
        return faces.clamp(0, 1), mris.clamp(0, 1)

    return augment
