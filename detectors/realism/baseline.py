"""The frozen-feature baseline: backbone features, mean/std pooled, then a classical regressor.

No fine-tuning: the backbone (ideally with local ImageNet weights, ``model.weights``) only
extracts features; a ridge / SVR / least-squares regressor on standardised pooled features is
fitted on the training clips. It tells how much the fine-tuned model gains over "features
plus a linear fit" - the first row of every realism-assessment results table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVR

from detectors.realism.clips import Clip
from detectors.realism.config import RealismBaselineConfig
from detectors.realism.model import RealismModelConfig
from detectors.realism.model_registry import model_kind
from detectors.realism.predict import clip_outputs
from detectors.realism.sampler import SequenceSampler

REGRESSORS = ("ridge", "svr", "linear")


def make_regressor(cfg: RealismBaselineConfig) -> Pipeline:
    if cfg.regressor == "ridge":
        reg = Ridge(alpha=cfg.alpha)
    elif cfg.regressor == "svr":
        reg = SVR(C=cfg.c)
    elif cfg.regressor == "linear":
        reg = LinearRegression()
    else:
        raise ValueError(f"unknown baseline regressor {cfg.regressor!r}; known: {', '.join(REGRESSORS)}")
    return make_pipeline(StandardScaler(), reg)


@dataclass
class FrozenFeatureBaseline:
    """``fit(train_clips)`` then ``predict(clips)``; the backbone is never updated."""

    model_cfg: RealismModelConfig
    cfg: RealismBaselineConfig
    sampler: SequenceSampler
    image_size: int
    device: torch.device
    seed: int = 0

    def __post_init__(self) -> None:
        torch.manual_seed(self.seed)  # a from-scratch backbone is a fixed random projection
        # the configured model untrained (da-clip: the CLIP image tower with model.weights)
        self.extractor = model_kind(self.model_cfg.name).build(self.model_cfg, 3.0)
        self.extractor = self.extractor.to(self.device).eval()
        for p in self.extractor.parameters():
            p.requires_grad_(False)
        self.regressor = make_regressor(self.cfg)

    def features(self, clips: Sequence[Clip]) -> np.ndarray:
        """Pooled (mean ++ std) features per clip, averaged over ``cfg.draws`` sequences."""
        return clip_outputs(self.extractor.pooled_features, clips, self.sampler,
                            inputs=self.model_cfg.inputs, size=self.image_size,
                            device=self.device, seed=self.seed, draws=self.cfg.draws)

    def fit(self, clips: Sequence[Clip]) -> FrozenFeatureBaseline:
        self.regressor.fit(self.features(clips), np.array([c.mos for c in clips]))
        return self

    def predict(self, clips: Sequence[Clip]) -> np.ndarray:
        return self.regressor.predict(self.features(clips))
