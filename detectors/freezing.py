"""Layer freezing and gradual unfreezing of a pretrained backbone (``train.freeze``).

The Xception/LSTM study fine-tuned "an XceptionNet with ImageNet weights, with 18 of the last
unfrozen layers" and, for EfficientNet-B3, "had to perform gradual unfreezing". Here the
backbone is cut into block groups, bottom to top, and a schedule says per epoch how many groups,
counted from the top, train; the head always trains::

    train:
      freeze:
        backbone_until_epoch: 2   # epochs 0 and 1 train the head only
        unfreeze: gradual         # then one more group per epoch, from the top (all: at once)
        groups: 4                 # the backbone's blocks in 4 contiguous groups (0: a group per block)
        max_unfrozen: 0           # the top groups ever trainable (0: all); the study's "last
                                  # layers unfrozen" is max_unfrozen with backbone_until_epoch 0

A frozen parameter has ``requires_grad=False``: it gets no gradient, so Adam (which skips
parameters without a gradient, weight decay included) never moves it; BatchNorm layers of frozen
groups are kept in eval mode, so their running statistics stay those of the pretrained weights.
The schedule is a function of the epoch only, so a resumed run freezes exactly as the original.
Departure from the study: it counted single layers (Keras layers); groups of blocks are the unit
here, because block boundaries are what every backbone has in common.

Blocks per backbone (:func:`backbone_blocks`): EfficientNet - the stem, each MBConv block of
``_blocks``, the head conv; torchvision / tiny-cnn / timm - the backbone's children that hold
parameters (a ``blocks``/``stages``/``layers`` container is opened one level), a normalisation
layer joining the block before it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from torch import nn

from mrigan.config import Checked, ConfigError, bounds

UNFREEZE = ("all", "gradual")
_CONTAINERS = ("blocks", "_blocks", "stages", "layers")
_NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)


@dataclass(frozen=True)
class FreezeConfig(Checked):
    # epochs that train the head only (0: none)
    backbone_until_epoch: int = field(default=0, metadata=bounds(minimum=0))
    # all | gradual (one more group per epoch, from the top)
    unfreeze: str = field(default="all", metadata=bounds(choices=UNFREEZE))
    # block groups the backbone is cut into (0: one per block)
    groups: int = field(default=0, metadata=bounds(minimum=0))
    max_unfrozen: int = field(default=0, metadata=bounds(minimum=0))  # top groups ever trainable (0: all)

    @property
    def enabled(self) -> bool:
        return bool(self.backbone_until_epoch or self.max_unfrozen or self.unfreeze == "gradual")


def trainable_groups(cfg: FreezeConfig, n_groups: int, epoch: int) -> int:
    """How many groups, counted from the top, train during ``epoch`` (0-based)."""
    if not cfg.enabled:
        return n_groups
    if epoch < cfg.backbone_until_epoch:
        return 0
    cap = min(cfg.max_unfrozen or n_groups, n_groups)
    if cfg.unfreeze == "all":
        return cap
    return min(cap, epoch - cfg.backbone_until_epoch + 1)


def _has_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def backbone_blocks(backbone: nn.Module) -> list[tuple[str, list[nn.Module]]]:
    """The backbone's blocks bottom to top, as ``(name, modules)``."""
    body = getattr(backbone, "body", backbone)
    net = getattr(body, "net", None)
    if net is not None and hasattr(net, "_blocks"):  # efficientnet-pytorch
        return ([("stem", [net._conv_stem, net._bn0])]
                + [(f"_blocks.{i}", [b]) for i, b in enumerate(net._blocks)]
                + [("head", [net._conv_head, net._bn1])])
    blocks: list[tuple[str, list[nn.Module]]] = []
    for name, child in body.named_children():
        if not _has_params(child):
            continue
        if name in _CONTAINERS and isinstance(child, (nn.Sequential, nn.ModuleList)):
            blocks += [(f"{name}.{i}", [b]) for i, b in enumerate(child) if _has_params(b)]
        elif isinstance(child, _NORMS) and blocks:
            blocks[-1][1].append(child)
        else:
            blocks.append((name, [child]))
    return blocks


@dataclass
class BlockGroup:
    """Some contiguous blocks of a backbone: their modules and parameters."""

    modules: list[nn.Module]
    params: list[nn.Parameter]


def block_groups(backbone: nn.Module, groups: int = 0) -> list[BlockGroup]:
    """The blocks in ``groups`` contiguous groups of near-equal block counts, bottom to top
    (``0``, or more groups than blocks: one group per block). Parameters of the backbone outside
    every block join the bottom group, so they unfreeze last."""
    blocks = [mods for _, mods in backbone_blocks(backbone)]
    if not blocks:
        raise ConfigError(f"train.freeze: backbone {type(backbone).__name__} has no parameters")
    n = len(blocks) if groups <= 0 else min(groups, len(blocks))
    out = []
    for idx in np.array_split(np.arange(len(blocks)), n):
        modules = [m for i in idx for m in blocks[i]]
        out.append(BlockGroup(modules, [p for m in modules for p in m.parameters()]))
    covered = {id(p) for g in out for p in g.params}
    out[0].params[:0] = [p for p in backbone.parameters() if id(p) not in covered]
    return out


class Freezer:
    """Applies a :class:`FreezeConfig` to a detector's ``backbone`` epoch by epoch."""

    def __init__(self, model: nn.Module, cfg: FreezeConfig) -> None:
        self.cfg = cfg
        self.groups = block_groups(model.backbone, cfg.groups) if cfg.enabled else []
        self.trainable = len(self.groups)

    def frozen_groups(self) -> list[BlockGroup]:
        return self.groups[: len(self.groups) - self.trainable]

    def apply(self, epoch: int) -> bool:
        """Set ``requires_grad`` for ``epoch``; True when the trainable set changed."""
        if not self.cfg.enabled:
            return False
        before = self.trainable
        self.trainable = trainable_groups(self.cfg, len(self.groups), epoch)
        for i, group in enumerate(self.groups):
            train = i >= len(self.groups) - self.trainable
            for p in group.params:
                p.requires_grad_(train)
        return self.trainable != before

    def freeze_norm_stats(self) -> None:
        """Put normalisation layers of frozen groups in eval mode (call after ``model.train()``)."""
        for group in self.frozen_groups():
            for module in group.modules:
                for m in module.modules():
                    if isinstance(m, nn.modules.batchnorm._BatchNorm):
                        m.eval()

    def describe(self) -> str:
        return f"backbone groups trainable {self.trainable}/{len(self.groups)} (from the top)"
