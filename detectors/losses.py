"""Detector losses on logits, by name: ``bce`` (label smoothing) and ``focal``.

Both take ``(logits, targets, weights=None)``: ``targets`` are 0/1 labels, smoothed here to
``eps/2`` and ``1 - eps/2`` (label smoothing 0.1 keeps a detector from becoming over-confident
on the compression quirks of one dataset); ``weights`` are per-sample (class balance).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mrigan.registry import Registry

LOSSES = Registry("detector loss")


def smooth(targets: torch.Tensor, eps: float) -> torch.Tensor:
    return targets.float() * (1.0 - eps) + 0.5 * eps


def _reduce(per_sample: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    if weights is None:
        return per_sample.mean()
    return (per_sample * weights).sum() / weights.sum().clamp_min(1e-12)


@LOSSES.register("bce")
def bce(logits, targets, weights=None, *, label_smoothing: float = 0.1, **_):
    per = F.binary_cross_entropy_with_logits(logits.float(), smooth(targets, label_smoothing),
                                             reduction="none")
    return _reduce(per, weights)


@LOSSES.register("focal")
def focal(logits, targets, weights=None, *, alpha: float = 0.25, gamma: float = 2.0,
          label_smoothing: float = 0.0, **_):
    """Lin et al.'s focal loss: ``-alpha_t (1 - p_t)^gamma log p_t`` (alpha weights fakes)."""
    logits = logits.float()
    t = smooth(targets, label_smoothing)
    ce = F.binary_cross_entropy_with_logits(logits, t, reduction="none")
    p = torch.sigmoid(logits)
    p_t = p * t + (1 - p) * (1 - t)
    alpha_t = alpha * t + (1 - alpha) * (1 - t)
    return _reduce(alpha_t * (1 - p_t) ** gamma * ce, weights)


def class_weights(labels, device=None) -> torch.Tensor:
    """``[w_real, w_fake]`` so both classes weigh the same in total: N / (2 * n_class)."""
    labels = torch.as_tensor(labels)
    n = labels.numel()
    n_fake = int(labels.sum())
    n_real = n - n_fake
    if n_fake == 0 or n_real == 0:
        return torch.ones(2, device=device)
    return torch.tensor([n / (2 * n_real), n / (2 * n_fake)], device=device)
