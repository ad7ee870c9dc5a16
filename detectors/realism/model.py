"""The realism regressor: per-frame backbone -> mean & std pooling over time -> FC -> MOS.

Mean pooling says how the frames look on average; the standard deviation says how much they
change (flicker and unstable blending are what raters notice in deepfakes), so both are
concatenated. The backbone is fine-tuned with the head.

The head (and the temporal pooling before it) always runs in fp32, also under bf16 autocast,
like the detectors' head (:func:`detectors.model.fp32_head`): a MOS near 3 in bf16 has steps of
1/64, so after a short training every clip's bf16 prediction rounded to the same value (issue
20: the ``plain`` row's SRCC was NaN on a CPU with native bf16, a constant prediction).

Inputs (by name): ``plain`` face crops, ``mri`` maps, or ``fused``: ``fusion="late"`` runs one
backbone per input and concatenates their pooled features; ``fusion="early"`` stacks the face
and its MRI as 6 channels into one backbone (half the compute, less capacity).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from detectors.backbones import build_backbone
from detectors.model import fp32_head
from detectors.realism.dataset import check_inputs
from mrigan.config import Checked

FUSIONS = ("late", "early")
STDS = ("population", "sample")


@dataclass(frozen=True)
class RealismModelConfig(Checked):
    # which model (detectors.realism.model_registry.REALISM_MODELS): "regressor" (this module) or
    # "da-clip" (DREAM's description-aligned CLIP, detectors.realism.da_clip; settings in da_clip:)
    name: str = "regressor"
    # any name of detectors.backbones (or timm:<model>); for da-clip the open_clip architecture
    # (ViT-B-32, ...) or a JSON file of one ({"embed_dim", "vision_cfg", "text_cfg"})
    backbone: str = "tiny-cnn"
    weights: str = ""  # local backbone (da-clip: whole CLIP) weights (.safetensors / .pt); "" = from scratch
    inputs: str = "plain"  # plain | mri | fused
    fusion: str = "late"  # for fused inputs: late (two backbones) | early (6 channels)
    hidden: int = 128
    dropout: float = 0.3
    # std pooling over time: "population" (1/n, our default) or "sample" (1/(n-1), the
    # ConvNeXt/EVA ensemble paper's f_std, ../shared/seeds/000_20c346b64137a7f6.txt)
    std: str = "population"


def temporal_pool(features: torch.Tensor, std: str = "population") -> torch.Tensor:
    """``(N, T, F)`` -> ``(N, 2F)``: mean and std over time, concatenated.

    ``std="population"`` divides by n (default), ``"sample"`` by n - 1 (the ensemble paper's
    ``f_std``). One frame gives a zero std either way.
    """
    if std not in STDS:
        raise ValueError(f"unknown std pooling {std!r}; known: {', '.join(STDS)}")
    mean = features.mean(dim=1)
    if features.shape[1] < 2:
        return torch.cat([mean, torch.zeros_like(mean)], dim=1)
    sd = features.std(dim=1, correction=1 if std == "sample" else 0)
    return torch.cat([mean, sd], dim=1)


class RealismRegressor(nn.Module):
    """``forward({"plain": (N,T,3,H,W), "mri": ...}) -> (N,)`` predicted MOS."""

    def __init__(self, cfg: RealismModelConfig, mos_centre: float = 3.0) -> None:
        super().__init__()

        self.cfg = cfg
        self.inputs = check_inputs(cfg.inputs)
        if cfg.fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {cfg.fusion!r}; known: {', '.join(FUSIONS)}")
        if cfg.std not in STDS:
            raise ValueError(f"unknown model.std {cfg.std!r}; known: {', '.join(STDS)}")
        weights = cfg.weights or None
        streams: dict[str, nn.Module] = {}
        if self.inputs == "fused" and cfg.fusion == "early":
            streams["early"], dim = build_backbone(cfg.backbone, in_channels=6, weights=weights)
            total = dim
        else:
            total = 0
            for name in (["plain", "mri"] if self.inputs == "fused" else [self.inputs]):
                streams[name], dim = build_backbone(cfg.backbone, in_channels=3, weights=weights)
                total += dim
        self.streams = nn.ModuleDict(streams)
        self.channels_last = False  # the trainer turns it on where it helps (CUDA)
        self.head = nn.Sequential(
            nn.Linear(2 * total, cfg.hidden), nn.ReLU(inplace=True), nn.Dropout(cfg.dropout),
            nn.Linear(cfg.hidden, 1),
        )
        with torch.no_grad():  # start at the middle of the scale: RMSE training starts sane
            self.head[-1].bias.fill_(float(mos_centre))

    def frame_features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``(N, T, F_total)`` per-frame features of every stream, concatenated."""
        feats = []
        for name, backbone in self.streams.items():
            x = torch.cat([batch["plain"], batch["mri"]], dim=2) if name == "early" else batch[name]
            n, t = x.shape[:2]
            x = x.flatten(0, 1)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            feats.append(backbone(x).view(n, t, -1))
        return torch.cat(feats, dim=2)

    def pooled_features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean & std over time in fp32 (module doc), whatever the backbone's precision."""
        features = self.frame_features(batch).float()
        with torch.autocast(device_type=features.device.type, enabled=False):
            return temporal_pool(features, self.cfg.std)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return fp32_head(self.head, self.pooled_features(batch)).squeeze(1)
