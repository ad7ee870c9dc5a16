"""Item 4 of issue 11: pretrained backbones get the inputs their weights expect.

A weights file is written from a randomly initialised network and loaded through the project's
local-weights loader; the detector's output must equal the raw network applied to manually
ImageNet-normalised inputs (and differ from the raw network on [0, 1] inputs), for faces and for
MRI maps (both are [0, 1] images).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from safetensors.torch import save_file

from detectors.backbones import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_backbone,
    calibrate_batchnorm_,
)
from detectors.config import DetectorModelConfig
from detectors.model import build_detector
from mrigan.fileio import read_image

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MEAN = torch.tensor([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1)


def _images(ff_examples, size=64):
    """A real face frame and the 1-SSIM style MRI-like map of a real pair, both in [0, 1]."""
    import cv2

    real = read_image(ff_examples / "ex_original.png")
    fake = read_image(ff_examples / "ex_deepfakes.png")
    face = cv2.resize(real, (size, size), interpolation=cv2.INTER_AREA)
    diff = cv2.resize(np.abs(real.astype(np.int16) - fake.astype(np.int16)).astype(np.uint8),
                      (size, size), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(np.stack([face, diff]).transpose(0, 3, 1, 2)).float() / 255.0


@pytest.mark.parametrize("name", ["resnet18", "efficientnet-b0"])
def test_loaded_weights_see_imagenet_normalised_inputs(tmp_path, ff_examples, name):
    torch.manual_seed(0)
    path = tmp_path / f"{name}.safetensors"
    # write the file the way an ImageNet checkpoint looks: the bare network's state dict
    if name == "resnet18":
        net = torchvision.models.resnet18(weights=None)
        state = net.state_dict()
    else:
        from efficientnet_pytorch import EfficientNet

        net = EfficientNet.from_name("efficientnet-b0")
        # running statistics of real use (efficientnet-pytorch's defaults shrink eval outputs
        # to ~1e-6, which would make any comparison trivially close)
        calibrate_batchnorm_(net)
        state = net.state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))

    detector = build_detector(DetectorModelConfig(backbone=name, weights=str(path), dropout=0.0)).eval()
    assert detector.backbone.input_mean == pytest.approx(IMAGENET_MEAN)
    assert detector.backbone.input_std == pytest.approx(IMAGENET_STD)
    net.eval()
    x = _images(ff_examples)  # face and MRI-like map, [0, 1]

    def raw_features(inputs):
        if name == "resnet18":
            net.fc = torch.nn.Identity()
            return net(inputs)
        return net.extract_features(inputs).mean(dim=(2, 3))

    with torch.no_grad():
        got = detector.backbone(x)
        expected = raw_features((x - MEAN) / STD)
        unnormalised = raw_features(x)
        assert expected.abs().mean() > 1e-2  # real activations, not a vanished signal
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
        assert (got - unnormalised).abs().mean() > 0.1 * expected.abs().mean()
        # and the whole detector (backbone + head) is the head on those normalised features
        torch.testing.assert_close(detector(x), detector.head(expected), rtol=1e-4, atol=1e-5)


def test_tiny_cnn_declares_no_normalisation(tmp_path):
    torch.manual_seed(0)
    module, _ = build_backbone("tiny-cnn")
    assert module.input_mean is None and module.input_std is None
    x = torch.rand(2, 3, 32, 32)
    module.eval()
    with torch.no_grad():
        torch.testing.assert_close(module.features(x), module.body(x))


def test_normalisation_is_not_in_state_dicts_and_follows_channels():
    module, _ = build_backbone("resnet18", in_channels=1)
    assert {"_mean", "_std"}.isdisjoint(module.state_dict())
    assert module._mean.shape == (1, 1, 1, 1)
    assert module.input_mean == pytest.approx((np.mean(IMAGENET_MEAN),))
    assert module.input_std == pytest.approx((np.mean(IMAGENET_STD),))
