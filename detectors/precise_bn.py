"""BatchNorm statistics re-estimated for the weights being evaluated (``train.bn_recalibrate``).

In eval mode a BatchNorm layer divides by its *running* variance, an exponential average
(momentum 0.1) over the training steps so far, which starts at 1. Two things make that average
wrong for short runs on small data, and a wrong average makes every face get the same score:

* it still holds ``0.9 ** steps`` of the starting value: measured on the benchmark's CPU preset
  (tiny-cnn at 64 px, 122 training faces, batch 16), the first block's true input variance is
  0.016 (PyTorch's default conv init on ``[0, 1]`` images), its running variance after the 16
  steps of epoch 1 was 0.198, so each block shrank the signal ~3.5x: the best-on-validation
  checkpoint (epoch 1) scored the 122 training faces 0.475-0.479 (std 0.0009, AUC 0.51, every
  face "real"), while the same weights with batch statistics had AUC 0.77;
* while the weights move fast (lr 1e-3), the average mixes statistics of older weights.

This is "precise BN" (Wu & Johnson, *Rethinking "Batch" in BatchNorm*, 2021; fvcore's
``update_bn_stats``): before each validation the running statistics are reset and recomputed as
the plain average over ``n`` training batches, with the current weights. Only the layers that
train in train mode are touched (BatchNorm of frozen groups keeps its pretrained statistics,
see :mod:`detectors.freezing`); gradients, dropout and the global RNG are not (the head stays
in eval mode), and running statistics are not used by a train-mode forward, so the optimisation
path is exactly the one without recalibration - only what eval mode sees changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

_NORMS = (nn.modules.batchnorm._BatchNorm,)


def trainable_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """BatchNorm layers of ``model`` that are in training mode (call after ``train_mode``)."""
    return [m for m in model.modules()
            if isinstance(m, _NORMS) and m.training and m.track_running_stats]


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, norms: list[nn.modules.batchnorm._BatchNorm],
                          batches: Iterable, forward: Callable[[nn.Module, object], object]
                          ) -> int:
    """Reset ``norms``' running statistics and re-estimate them as the equal-weight average
    over ``batches`` (``forward(model, batch)`` runs one). Returns the number of batches used
    (0: no batch, nothing changed). ``model`` is left in eval mode."""
    model.eval()
    if not norms:
        return 0
    saved = [(m, m.momentum) for m in norms]
    n = 0
    try:
        for batch in batches:
            if n == 0:  # reset only once a batch is there: no batches, no change
                for m in norms:
                    m.reset_running_stats()
                    m.momentum = None  # cumulative average: every batch counts the same
                    m.train()
            forward(model, batch)
            n += 1
    finally:
        for m, momentum in saved:
            m.momentum = momentum
            m.eval()
    return n


__all__ = ["recalibrate_batchnorm", "trainable_norms"]
