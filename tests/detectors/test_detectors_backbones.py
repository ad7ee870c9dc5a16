"""Backbones: shapes, in_channels, weights files (safetensors / torch.save) and clear errors."""

from __future__ import annotations

import importlib.util

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from detectors.backbones import BACKBONES, WeightsError, build_backbone
from mrigan.pretrained import PretrainedWeightsMissing

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("name,dim", [("tiny-cnn", 64), ("efficientnet-b0", 1280),
                                      ("resnet18", 512)])
def test_backbone_maps_images_to_feature_vectors(name, dim):
    module, feature_dim = build_backbone(name)
    module.eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        vec, fmap = module(x), module.features(x)
    assert feature_dim == dim
    assert vec.shape == (2, dim) and fmap.shape[:2] == (2, dim) and fmap.ndim == 4
    # forward is the global average of the spatial map (the paper head pools the same map)
    torch.testing.assert_close(vec, fmap.mean(dim=(2, 3)))


def test_one_channel_inputs():
    for name in ("tiny-cnn", "resnet18", "efficientnet-b0"):
        module, dim = build_backbone(name, in_channels=1)
        module.eval()
        with torch.no_grad():
            assert module(torch.rand(1, 1, 64, 64)).shape == (1, dim)


def test_six_channel_resnet_first_conv_is_the_loaded_rgb_kernels_mean(tmp_path):
    """A face and an MRI stacked: the loaded conv1's RGB kernel is averaged over its channels
    and repeated; everything after it is the file's. With every normalised input channel equal
    to one map z the 6-channel conv sees 6 x mean = 2 x the RGB kernel's sum, so the backbone
    gives what the 3-channel reference gives on 2z."""
    reference = torchvision.models.resnet18(weights=None).eval()
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    module, _ = build_backbone("resnet18", in_channels=6, weights=str(path))
    conv = module.body[0]
    assert conv.in_channels == 6 and conv.weight.shape == (64, 6, 7, 7)
    rgb = reference.conv1.weight.detach()
    torch.testing.assert_close(conv.weight, rgb.mean(1, keepdim=True).expand(-1, 6, -1, -1))
    reference.fc = torch.nn.Identity()
    z = torch.randn(2, 1, 64, 64)
    mean = torch.tensor(module.input_mean).reshape(1, 6, 1, 1)
    std = torch.tensor(module.input_std).reshape(1, 6, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(module.eval()(z * std + mean),
                                   reference(2 * z.expand(-1, 3, -1, -1)), rtol=1e-4, atol=1e-4)


def test_six_channel_efficientnet_keeps_the_loaded_stem_as_its_rgb_kernels_mean(tmp_path):
    """EfficientNet as the other backbones: with a weights file and 6 input channels the stem
    is the file's RGB kernel averaged and repeated (it was re-initialised, losing the loaded
    kernel); every other tensor is the file's."""
    torch.manual_seed(0)
    rgb_module, _ = build_backbone("efficientnet-b0")
    state = {k: v.clone() for k, v in rgb_module.body.net.state_dict().items()}
    state["_fc.weight"], state["_fc.bias"] = torch.zeros(1000, 1280), torch.zeros(1000)
    path = tmp_path / "b0.pth"
    torch.save(state, path)
    module, _ = build_backbone("efficientnet-b0", in_channels=6, weights=str(path))
    net = module.body.net
    rgb = state["_conv_stem.weight"]
    assert net._conv_stem.weight.shape == (32, 6, 3, 3)
    torch.testing.assert_close(net._conv_stem.weight, rgb.mean(1, keepdim=True).expand(-1, 6, -1, -1))
    for key, value in net.state_dict().items():
        if key != "_conv_stem.weight":
            torch.testing.assert_close(value, state[key], msg=key)


def test_inception_first_conv_takes_other_channel_counts():
    torch.manual_seed(0)
    rgb = build_backbone("inception_v3")[0].body[0].conv.weight.detach()
    torch.manual_seed(0)
    one = build_backbone("inception_v3", in_channels=1)[0].body[0].conv
    assert one.in_channels == 1
    torch.testing.assert_close(one.weight, rgb.mean(1, keepdim=True))


def _imagenet(x):
    mean = torch.tensor([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1)
    return (x - mean) / std


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_resnet_imagenet_style_checkpoint_loads_and_matches_torchvision(tmp_path, suffix):
    reference = torchvision.models.resnet18(weights=None).eval()  # random "ImageNet" weights
    state = reference.state_dict()  # includes fc.* like a real ImageNet checkpoint
    path = tmp_path / f"resnet18{suffix}"
    if suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    module, _ = build_backbone("resnet18", weights=str(path))
    module.eval()
    reference.fc = torch.nn.Identity()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():  # the backbone applies ImageNet normalisation to its [0, 1] input
        torch.testing.assert_close(module(x), reference(_imagenet(x)))


def test_efficientnet_checkpoint_loads(tmp_path):
    from efficientnet_pytorch import EfficientNet

    reference = EfficientNet.from_name("efficientnet-b0").eval()
    path = tmp_path / "b0.pth"
    torch.save(reference.state_dict(), path)
    module, _ = build_backbone("efficientnet-b0", weights=str(path))
    module.eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(module(x),
                                   reference.extract_features(_imagenet(x)).mean(dim=(2, 3)))


def test_weight_errors_are_clear(tmp_path):
    with pytest.raises(PretrainedWeightsMissing, match="pass its local path") as info:
        build_backbone("efficientnet-b0", weights="imagenet")
    assert str(info.value).startswith("backbone 'efficientnet-b0': no packaged ImageNet weights")
    assert "build_backbone('efficientnet-b0', weights=" in str(info.value)
    with pytest.raises(WeightsError, match="not found"):
        build_backbone("tiny-cnn", weights=str(tmp_path / "nope.pth"))
    wrong = tmp_path / "tiny.pth"
    torch.save(build_backbone("tiny-cnn")[0].state_dict(), wrong)
    with pytest.raises(WeightsError, match="does not fit backbone 'resnet18'"):
        build_backbone("resnet18", weights=str(wrong))
    with pytest.raises(KeyError, match="efficientnet-b7"):
        build_backbone("efficientnet-b9")


def test_all_names_registered():
    names = BACKBONES.names()
    for n in [f"efficientnet-b{i}" for i in range(8)] + [
            "resnet18", "resnet34", "resnet50", "resnext50_32x4d", "inception_v3", "tiny-cnn"]:
        assert n in names


def test_timm_names():
    if importlib.util.find_spec("timm") is None:
        with pytest.raises(ImportError, match="pip install"):
            build_backbone("timm:resnet18")
    else:
        module, dim = build_backbone("timm:resnet18")
        assert module.eval()(torch.rand(1, 3, 64, 64)).shape == (1, dim)
