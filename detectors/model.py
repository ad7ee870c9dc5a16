"""Detectors = backbone + head. Frame detectors score one image; temporal ones a clip.

Both return logits (positive = fake). The image they see is whatever the input adapter
(:mod:`detectors.inputs`) gives them - a face crop or its MRI - so the same classes serve the
paper's two methods.

The head always runs in fp32, also under bf16/fp16 autocast: bf16 keeps ~3 significant digits,
so bf16 logits of similar faces tie, and tied validation scores make AUC meaningless.
"""

from __future__ import annotations

import torch
from torch import nn

from detectors.backbones import Backbone, build_backbone
from detectors.config import DetectorModelConfig
from detectors.heads import HEADS, TemporalHead


def fp32_head(head: nn.Module, features: torch.Tensor, *args) -> torch.Tensor:
    """``head(features.float(), *args)`` with autocast off: fp32 logits whatever the precision."""
    with torch.autocast(device_type=features.device.type, enabled=False):
        return head(features.float(), *args)


class FrameDetector(nn.Module):
    """``(N, C, H, W)`` images -> ``(N,)`` logits."""

    temporal = False

    def __init__(self, backbone: Backbone, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, images: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return fp32_head(self.head, self.backbone.features(images))


class TemporalDetector(nn.Module):
    """``(B, T, C, H, W)`` clips (+ ``(B, T)`` valid-frame mask) -> ``(B,)`` logits.

    The backbone runs on the valid frames only (padding is never pushed through the CNN).
    """

    temporal = True

    def __init__(self, backbone: Backbone, head: TemporalHead) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, clips: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, t = clips.shape[:2]
        if mask is None:
            mask = torch.ones(b, t, dtype=torch.bool, device=clips.device)
        flat = clips[mask]  # (valid frames, C, H, W)
        vectors = self.backbone(flat)
        features = vectors.new_zeros(b, t, vectors.shape[-1])
        features[mask] = vectors
        return fp32_head(self.head, features, mask)


def build_detector(cfg: DetectorModelConfig, in_channels: int = 3) -> FrameDetector | TemporalDetector:
    backbone, dim = build_backbone(cfg.backbone, in_channels=in_channels, weights=cfg.weights)
    if cfg.temporal:
        return TemporalDetector(backbone, TemporalHead(dim, hidden=cfg.lstm_hidden,
                                                       dropout=cfg.dropout))
    return FrameDetector(backbone, HEADS.build(cfg.head, dim, dropout=cfg.dropout))
