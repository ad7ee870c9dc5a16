"""Realism models by name (``model.name``): what the shared trainer and evaluation need of each.

* ``regressor`` - :class:`detectors.realism.model.RealismRegressor` (backbone, mean & std
  pooling, MLP head) trained with ``train.loss``.
* ``da-clip`` - DREAM's description-aligned CLIP (:mod:`detectors.realism.da_clip_train`),
  trained with Eq. 7 on the rated videos' descriptions; its test report adds the top-K
  retrieved training descriptions per video.

Every model runs in the same pipeline: :func:`detectors.realism.train.train_regressor` (on
:mod:`mrigan.loop`: run folder, checkpoints, exact resume, time budget) and
:func:`detectors.realism.evaluate.evaluate_run`. A kind gives ``build(model_cfg, mos_centre)``
(a module with ``forward(batch) -> (N,)`` MOS and ``pooled_features(batch)`` for the
frozen-feature baseline), its trainer plugin, how to load it from a checkpoint, its up-front
config checks, and optionally an ``explain`` step whose result goes into the test report.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from detectors.realism.clips import Clip
from detectors.realism.config import RealismConfig
from detectors.realism.da_clip_train import (
    DaClipTrainer,
    build_da_clip,
    check_da_clip,
    load_da_clip,
    retrieve_descriptions,
)
from detectors.realism.model import RealismModelConfig, RealismRegressor
from detectors.realism.trainer import RegressorTrainer
from mrigan.registry import Registry


@dataclass(frozen=True)
class RealismModelKind:
    build: Callable[[RealismModelConfig, float], nn.Module]
    trainer: Callable[[RealismConfig, nn.Module, torch.device, Sequence[Clip]], RegressorTrainer]
    load: Callable[[RealismModelConfig, Mapping[str, Any]], nn.Module]
    check: Callable[[RealismConfig, str, bool], None] = lambda cfg, where, training: None
    # (model, cfg, test sets, device) -> JSON-able dict for the report, or None
    explain: Callable[..., dict | None] | None = None


REALISM_MODELS = Registry("realism model")


def _load_regressor(model_cfg: RealismModelConfig, state: Mapping[str, Any]) -> nn.Module:
    # Local backbone weights are inside the state dict: do not require their file again.
    model = RealismRegressor(dataclasses.replace(model_cfg, weights=""),
                             mos_centre=state.get("mos_centre", 3.0))
    model.load_state_dict(state["model"])
    return model


def _load_da_clip(model_cfg: RealismModelConfig, state: Mapping[str, Any]) -> nn.Module:
    return load_da_clip(dataclasses.replace(model_cfg, weights=""), state)


REALISM_MODELS.register("regressor", RealismModelKind(
    build=lambda model_cfg, mos_centre: RealismRegressor(model_cfg, mos_centre=mos_centre),
    trainer=lambda cfg, model, device, clips: RegressorTrainer(cfg, model, device),
    load=_load_regressor))

REALISM_MODELS.register("da-clip", RealismModelKind(
    build=build_da_clip, trainer=DaClipTrainer, load=_load_da_clip, check=check_da_clip,
    explain=retrieve_descriptions))


def model_kind(name: str) -> RealismModelKind:
    """The registered kind of ``model.name`` (an :class:`UnknownNameError` listing the names)."""
    return REALISM_MODELS.get(name)
