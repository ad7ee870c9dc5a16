"""README guide "Add a detector backbone", done exactly as written: register one factory in
``detectors.backbones.BACKBONES`` returning a :class:`~detectors.backbones.Backbone`, name it
in ``model.backbone``, and ``train_detector`` trains it (here one optimiser step on a small
MRI-DF of demo faces); the checkpoint holds its weights and reloads into it."""

from __future__ import annotations

import dataclasses

import torch
from _detector_setup import tiny_detector_config, write_detector_mri_df
from torch import nn

from detectors.backbones import BACKBONES, Backbone
from detectors.config import DetectorModelConfig
from detectors.model import build_detector
from detectors.train import train_detector
from mrigan.checkpoint import load_checkpoint


def test_a_registered_backbone_trains_one_step(tmp_path, one_torch_thread):
    initial: list[dict[str, torch.Tensor]] = []  # each built backbone's starting weights

    @BACKBONES.register("guide-cnn")
    def guide_cnn(*, in_channels: int = 3, weights: str | None = None) -> Backbone:
        body = nn.Sequential(nn.Conv2d(in_channels, 8, 3, stride=2, padding=1), nn.ReLU(),
                             nn.Conv2d(8, 12, 3, stride=2, padding=1), nn.ReLU())
        module = Backbone(body, 12, "guide-cnn")  # feature map (N, 12, h, w)
        initial.append({k: v.clone() for k, v in module.state_dict().items()})
        return module

    try:
        root = write_detector_mri_df(tmp_path / "mri_df")
        cfg = tiny_detector_config(root, tmp_path / "runs", "guide", epochs=1, max_steps=1)
        cfg = dataclasses.replace(cfg, model=DetectorModelConfig(backbone="guide-cnn"))
        result = train_detector(cfg, log=lambda _line: None)
        assert result.step == 1 and len(initial) == 1  # built once, by the trainer
        start = initial[0]
        state = load_checkpoint(result.last_checkpoint)["model"]
        trained = {k: v for k, v in state.items() if k.startswith("backbone.body.")}
        assert sorted(trained) == sorted(f"backbone.{k}" for k in start)
        assert any(not torch.equal(trained[f"backbone.{k}"], v) for k, v in start.items())
        again = build_detector(cfg.model)
        again.load_state_dict(state)  # reloads into the registered backbone
        assert isinstance(again.backbone, Backbone) and again.backbone.name == "guide-cnn"
    finally:
        BACKBONES.unregister("guide-cnn")

