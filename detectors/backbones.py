"""Image backbones chosen by name: face crop or MRI -> feature vector.

Every backbone is a :class:`Backbone`: ``features(x)`` gives the last spatial feature map
``(N, F, h, w)`` (what Grad-CAM hooks and what the paper's head pools) and ``forward(x)`` gives
the globally average-pooled vector ``(N, F)``. ``build_backbone(name)`` returns
``(module, feature_dim)``.

ImageNet weights cannot be downloaded by this library: every network is built from scratch
and, when ``weights`` names a local file, loaded from it (``.safetensors`` preferred, any
``torch.save``d state dict otherwise, read with ``weights_only=True`` so a checkpoint can never
run code). The classifier of an ImageNet checkpoint is ignored (the backbone drops it); any
other missing or unexpected key is an error naming the file.

Names: ``efficientnet-b0`` .. ``efficientnet-b7`` (efficientnet-pytorch, the paper's B0),
``resnet18/34/50``, ``resnext50_32x4d``, ``inception_v3`` (torchvision; the thesis' strongest),
``timm:<model>`` for any timm model when the optional ``timm`` extra is installed, and
``tiny-cnn``, a four-layer CNN for CPU tests and smoke runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

from mrigan.errors import MriganError
from mrigan.registry import Registry

BACKBONES = Registry("backbone")

#: Names a user might type to mean "ImageNet weights, please" - we cannot download them.
_PRETRAINED_WORDS = {"imagenet", "pretrained", "true", "default", "download"}

#: Classifier parameters of ImageNet checkpoints; the backbone has no classifier.
_CLASSIFIER_PREFIXES = ("fc.", "_fc.", "classifier.", "head.", "AuxLogits.")


class WeightsError(MriganError, ValueError):
    """A weights file that is missing, unreadable, or does not fit the backbone."""


class Backbone(nn.Module):
    """A feature extractor: ``features`` -> spatial map, ``forward`` -> pooled vector."""

    def __init__(self, body: nn.Module, feature_dim: int, name: str) -> None:
        super().__init__()
        self.body = body
        self.feature_dim = int(feature_dim)
        self.name = name

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` images -> ``(N, F, h, w)`` last feature map."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1)


class _EfficientNetBody(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x)


class _TimmBackbone(Backbone):
    """timm models pool their own way (tokens for ViTs): use their head's pre-logits."""

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body.forward_features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body.forward_head(self.body.forward_features(x), pre_logits=True)


# ----------------------------------------------------------------------------------------------
# weights files


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a ``torch.save`` file (``weights_only=True``).

    Accepts the wrappers training scripts commonly write (``{"state_dict": ...}``,
    ``{"model": ...}``) and strips a DistributedDataParallel ``module.`` prefix.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - re-raised with the file name
        raise WeightsError(f"{path}: could not read weights ({type(exc).__name__}: {exc})") from exc
    for key in ("state_dict", "model", "model_state"):
        if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
            state = state[key]
    if not isinstance(state, Mapping):
        raise WeightsError(f"{path}: expected a state dict, got {type(state).__name__}")
    return {k.removeprefix("module."): v for k, v in state.items() if torch.is_tensor(v)}


def _load_weights(model: nn.Module, weights: str, name: str) -> None:
    if weights.strip().lower() in _PRETRAINED_WORDS:
        raise WeightsError(
            f"backbone {name!r}: pretrained weights cannot be downloaded by mrigan. Download the "
            f"ImageNet checkpoint on a machine with internet access and pass its local path, e.g. "
            f"build_backbone({name!r}, weights='/models/{name}.safetensors') or in YAML "
            f"`model.weights: /models/{name}.pth` (.safetensors or a torch.save'd state dict)."
        )
    state = read_state_dict(weights)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(_CLASSIFIER_PREFIXES)]
    unexpected = [k for k in unexpected if not k.startswith(_CLASSIFIER_PREFIXES)]
    if missing or unexpected:
        raise WeightsError(
            f"{weights}: does not fit backbone {name!r}: {len(missing)} missing key(s) "
            f"{missing[:5]}, {len(unexpected)} unexpected key(s) {unexpected[:5]}"
        )


def _replace_first_conv(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """A conv taking ``in_channels`` inputs; its kernel is the RGB kernel's channel mean, so
    loaded ImageNet weights still give a sensible start (what timm does for ``in_chans``)."""
    new = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                    conv.padding, conv.dilation, conv.groups, conv.bias is not None)
    with torch.no_grad():
        new.weight.copy_(conv.weight.mean(dim=1, keepdim=True).expand_as(new.weight))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new


# ----------------------------------------------------------------------------------------------
# families


def _efficientnet(variant: str) -> Callable[..., Backbone]:
    name = f"efficientnet-{variant}"

    def build(*, in_channels: int = 3, weights: str | None = None) -> Backbone:
        from efficientnet_pytorch import EfficientNet

        net = EfficientNet.from_name(name)
        if weights:
            _load_weights(net, weights, name)
        if in_channels != 3:
            net._change_in_channels(in_channels)
        feature_dim = net._fc.in_features
        # The classifier is unused: drop its parameters so optimisers and DDP do not see them.
        net._fc = nn.Identity()
        net._dropout = nn.Identity()
        return Backbone(_EfficientNetBody(net), feature_dim, name)

    return build


for _v in range(8):
    BACKBONES.register(f"efficientnet-b{_v}", _efficientnet(f"b{_v}"))


def _torchvision_cnn(name: str) -> Callable[..., Backbone]:
    def build(*, in_channels: int = 3, weights: str | None = None) -> Backbone:
        import torchvision

        kwargs = {"aux_logits": False, "init_weights": True} if name == "inception_v3" else {}
        net = torchvision.models.get_model(name, weights=None, **kwargs)
        if weights:
            _load_weights(net, weights, name)
        if in_channels != 3:
            if name == "inception_v3":
                net.Conv2d_1a_3x3.conv = _replace_first_conv(net.Conv2d_1a_3x3.conv, in_channels)
            else:
                net.conv1 = _replace_first_conv(net.conv1, in_channels)
        feature_dim = net.fc.in_features
        drop = {"avgpool", "dropout", "fc", "AuxLogits"}
        body = nn.Sequential(*(m for n, m in net.named_children() if n not in drop))
        return Backbone(body, feature_dim, name)

    return build


for _name in ("resnet18", "resnet34", "resnet50", "resnext50_32x4d", "inception_v3"):
    BACKBONES.register(_name, _torchvision_cnn(_name))


@BACKBONES.register("tiny-cnn")
def tiny_cnn(*, in_channels: int = 3, weights: str | None = None, width: int = 16) -> Backbone:
    """Four strided conv blocks (~30k parameters): trains in seconds on CPU, for tests/smoke."""
    layers: list[nn.Module] = []
    channels = in_channels
    for out in (width, width * 2, width * 4, width * 4):
        layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1, bias=False),
                   nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
        channels = out
    module = Backbone(nn.Sequential(*layers), channels, "tiny-cnn")
    if weights:
        _load_weights(module, weights, "tiny-cnn")
    return module


def _timm(model_name: str, *, in_channels: int = 3, weights: str | None = None) -> Backbone:
    try:
        import timm
    except ImportError as exc:
        raise ImportError(
            f"backbone 'timm:{model_name}' needs the optional timm package: "
            f"pip install 'mrigan[timm]' (or pip install timm)"
        ) from exc
    net = timm.create_model(model_name, pretrained=False, num_classes=0, in_chans=in_channels)
    if weights:
        _load_weights(net, weights, f"timm:{model_name}")
    return _TimmBackbone(net, net.num_features, f"timm:{model_name}")


def backbone_names() -> list[str]:
    """Registered names, plus the ``timm:<model>`` pattern."""
    return BACKBONES.names() + ["timm:<model>"]


def build_backbone(name: str, *, in_channels: int = 3,
                   weights: str | None = None) -> tuple[Backbone, int]:
    """Build backbone ``name`` -> ``(module, feature_dim)``; ``module(x)`` is ``(N, feature_dim)``.

    ``weights``: a local ``.safetensors`` / ``.pth`` file, or None to start from scratch.
    """
    if name.startswith("timm:"):
        module = _timm(name.split(":", 1)[1], in_channels=in_channels, weights=weights)
    else:
        module = BACKBONES.build(name, in_channels=in_channels, weights=weights)
    return module, module.feature_dim
