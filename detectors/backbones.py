"""Image backbones chosen by name: face crop or MRI -> feature vector.

Every backbone is a :class:`Backbone`: ``features(x)`` gives the last spatial feature map
``(N, F, h, w)`` (what Grad-CAM hooks and what the paper's head pools) and ``forward(x)`` gives
the globally average-pooled vector ``(N, F)``. ``build_backbone(name)`` returns
``(module, feature_dim)``.

ImageNet weights are never downloaded by this library: every network is built from scratch
and, when ``weights`` names a local file, loaded from it (``.safetensors`` preferred, any
``torch.save``d state dict otherwise, read with ``weights_only=True`` so a checkpoint can never
run code). The classifier of an ImageNet checkpoint is ignored (the backbone drops it); any
other missing or unexpected key is an error naming the file. ``weights="imagenet"`` works for the
networks whose ImageNet weights ship inside an installed package (:mod:`mrigan.pretrained`:
``mobilenet_v2``, ``efficientnet-lite0``; installed by ``make venv``); their backbones record
the package, version and SHA-256 in ``weights_source``. For the others it is an error asking
for a local file.

Names: ``efficientnet-b0`` .. ``efficientnet-b7`` (efficientnet-pytorch, the paper's B0),
``resnet18/34/50``, ``resnext50_32x4d``, ``inception_v3`` (torchvision; the thesis' strongest),
``mobilenet_v2`` (torchvision) and ``efficientnet-lite0`` (:mod:`mrigan.encoders`; input scaled
to ``[-1, 1]`` as the Lite weights expect, not ImageNet mean/std), ``timm:<model>`` for any timm
model when the optional ``timm`` extra is installed, and ``tiny-cnn``, a four-layer CNN for CPU
tests and smoke runs.

Input normalisation: every backbone declares the normalisation its weights expect
(``input_mean`` / ``input_std``, or none) and applies it itself at the start of ``features``, so
callers always pass ``[0, 1]`` images - faces and MRI maps alike - and a detector, Grad-CAM or a
temporal model cannot forget it. EfficientNet, torchvision and timm networks use ImageNet
mean/std (timm: the model's own ``pretrained_cfg``), whether their weights come from a file or
from scratch, so a from-scratch run and a fine-tune see the same inputs; ``tiny-cnn`` uses none.
With ``in_channels`` a multiple of 3 (a face and an MRI stacked) the RGB values repeat; with
any other count they are replaced by their average (what timm does for one channel). The buffers are not saved in state dicts (weights files stay plain).

EfficientNet from scratch (a departure from efficientnet-pytorch's defaults, which the paper used
only with ImageNet weights): efficientnet-pytorch leaves PyTorch's default conv init (weight
variance 1/(3 fan_in)) and sets BatchNorm momentum 0.01. In eval mode BatchNorm divides by its
running variance, which starts at 1 and moves 1% per step, so for the first hundreds of steps
every one of the 49 BN layers shrinks the signal by the missing factor: measured on an untrained
B0, the eval-mode feature map has std 2e-13 (train mode: 0.58), the head sees a constant vector
and every face gets the same score (validation AUC exactly 0.5). We initialise convs and the
linear layers as the TensorFlow reference does (He-normal, fan-out; BN weight 1, bias 0) and use
PyTorch's BatchNorm momentum 0.1, so the running statistics follow the data within tens of
steps. Even so, an eval-mode B0 whose BN layers hold the (0, 1) starting statistics still shrinks
the signal ~4x per block (Swish and the squeeze-excitation gates; measured feature std 4e-6), so
a from-scratch EfficientNet also starts with running statistics measured on one train-mode pass
over a fixed batch of uniform-noise images (:func:`calibrate_batchnorm_`, its own seeded
generator: the global RNG is untouched). Measured on 64 real FF++ faces at 96 px: eval-mode
feature std 0.17, per-feature spread across faces 0.034 (train mode 0.34 / 0.31). Loaded weights
replace init and statistics alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from mrigan.config import require_path
from mrigan.encoders import (
    CLASSIFIER_PREFIXES,
    ENCODERS,
    Encoder,
    adapt_first_conv_,
    build_encoder,
    init_efficientnet_,
    load_checked,
)
from mrigan.fileio import sha256_file
from mrigan.pretrained import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    WEIGHTS_PACKAGES,
    PretrainedWeightsMissing,
    WeightsError,
    is_pretrained_word,
    no_packaged_weights,
    read_state_dict,
    resolve_packaged,
)
from mrigan.registry import Registry

BACKBONES = Registry("backbone")

__all__ = ["BACKBONES", "CLASSIFIER_PREFIXES", "IMAGENET_MEAN", "IMAGENET_STD", "Backbone",
           "WeightsError", "backbone_names", "build_backbone", "check_backbone_weights",
           "read_state_dict", "weights_record"]


def _channel_stats(values: Sequence[float], in_channels: int) -> tuple[float, ...]:
    values = tuple(float(v) for v in values)
    if in_channels % len(values) == 0:  # 3 -> 3, or 6 (face + MRI stacked) -> RGB twice
        return values * (in_channels // len(values))
    return (sum(values) / len(values),) * in_channels


class Backbone(nn.Module):
    """A feature extractor: ``features`` -> spatial map, ``forward`` -> pooled vector.

    ``mean`` / ``std`` (one value per input channel, or None): the normalisation the network's
    weights expect, applied by :meth:`normalize` at the start of :meth:`features`; inputs are
    ``[0, 1]`` images.
    """

    def __init__(self, body: nn.Module, feature_dim: int, name: str, *,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 in_channels: int = 3) -> None:
        super().__init__()
        self.body = body
        self.feature_dim = int(feature_dim)
        self.name = name
        if (mean is None) != (std is None):
            raise ValueError(f"backbone {name!r}: give both mean and std, or neither")
        #: provenance of packaged ImageNet weights (``mrigan.pretrained``), None otherwise
        self.weights_source: dict[str, str] | None = None
        self.input_mean = None if mean is None else _channel_stats(mean, in_channels)
        self.input_std = None if std is None else _channel_stats(std, in_channels)
        if self.input_mean is not None:
            shape = (1, in_channels, 1, 1)
            self.register_buffer("_mean", torch.tensor(self.input_mean).reshape(shape),
                                 persistent=False)
            self.register_buffer("_std", torch.tensor(self.input_std).reshape(shape),
                                 persistent=False)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``[0, 1]`` images -> what the weights expect (identity without a declared mean/std)."""
        if self.input_mean is None:
            return x
        return (x - self._mean.to(x.dtype)) / self._std.to(x.dtype)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` images in ``[0, 1]`` -> ``(N, F, h, w)`` last feature map."""
        return self.body(self.normalize(x))

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
        return self.body.forward_features(self.normalize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body.forward_head(self.features(x), pre_logits=True)


# ----------------------------------------------------------------------------------------------
# weights files


def _no_packaged_weights(name: str) -> PretrainedWeightsMissing:
    return no_packaged_weights(name, f"backbone {name!r}",
                               f"build_backbone({name!r}, weights='/models/{name}.safetensors')")


def _load_weights(model: nn.Module, weights: str, name: str) -> None:
    if is_pretrained_word(weights):
        raise _no_packaged_weights(name)
    load_checked(model, read_state_dict(weights), weights, f"backbone {name!r}")


# ----------------------------------------------------------------------------------------------
# families


#: efficientnet-pytorch's ``batch_norm_momentum`` is TF's decay: 0.9 -> torch momentum 0.1.
EFFICIENTNET_BN_DECAY = 0.9


def calibrate_batchnorm_(module: nn.Module, in_channels: int = 3, size: int = 96,
                         batch: int = 16, seed: int = 0) -> None:
    """Set every BatchNorm's running statistics to those of one train-mode forward pass over a
    fixed batch of uniform-noise ``[0, 1]`` images (cumulative average, then the layer's own
    momentum again). Weights are unchanged; the global RNG is not used."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    x = torch.rand(batch, in_channels, size, size, generator=torch.Generator().manual_seed(seed))
    momenta = [m.momentum for m in norms]
    was_training = module.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    module.train()
    try:
        with torch.no_grad():
            module(x)
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        module.train(was_training)


def _efficientnet(variant: str) -> Callable[..., Backbone]:
    name = f"efficientnet-{variant}"

    def build(*, in_channels: int = 3, weights: str | None = None) -> Backbone:
        from efficientnet_pytorch import EfficientNet

        net = EfficientNet.from_name(name, batch_norm_momentum=EFFICIENTNET_BN_DECAY)
        init_efficientnet_(net)
        if weights:
            _load_weights(net, weights, name)
        if in_channels != 3 and weights:  # the loaded RGB stem kept, as the other backbones do
            adapt_first_conv_(net._conv_stem, in_channels)
        elif in_channels != 3:  # no weights: a fresh stem of the new width
            net._change_in_channels(in_channels)
            init_efficientnet_(net._conv_stem)
        feature_dim = net._fc.in_features
        # The classifier is unused: drop its parameters so optimisers and DDP do not see them.
        net._fc = nn.Identity()
        net._dropout = nn.Identity()
        module = Backbone(_EfficientNetBody(net), feature_dim, name, mean=IMAGENET_MEAN,
                          std=IMAGENET_STD, in_channels=in_channels)
        if not weights:
            calibrate_batchnorm_(module, in_channels)
        return module

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
            adapt_first_conv_(net.Conv2d_1a_3x3.conv if name == "inception_v3" else net.conv1,
                              in_channels)
        feature_dim = net.fc.in_features
        drop = {"avgpool", "dropout", "fc", "AuxLogits"}
        body = nn.Sequential(*(m for n, m in net.named_children() if n not in drop))
        return Backbone(body, feature_dim, name, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                        in_channels=in_channels)

    return build


for _name in ("resnet18", "resnet34", "resnet50", "resnext50_32x4d", "inception_v3"):
    BACKBONES.register(_name, _torchvision_cnn(_name))


class _EncoderBody(nn.Module):
    """A :class:`mrigan.encoders.Encoder` as a backbone body (last feature map, no classifier)."""

    def __init__(self, encoder: Encoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder.feature_map(x)


def _encoder_backbone(name: str) -> Callable[..., Backbone]:
    """Backbones on the core's encoders (:mod:`mrigan.encoders`): ``weights="imagenet"`` loads
    the packaged ImageNet file (:mod:`mrigan.pretrained`) and records its provenance in
    ``weights_source``; a missing package is a one-line :class:`PretrainedWeightsMissing`."""

    def build(*, in_channels: int = 3, weights: str | None = None) -> Backbone:
        net, source = build_encoder(name, weights=weights)
        net.drop_classifier()
        if in_channels != 3:
            net.change_in_channels(in_channels)
        module = Backbone(_EncoderBody(net), net.feature_dim, name, mean=net.input_mean,
                          std=net.input_std, in_channels=in_channels)
        module.weights_source = source
        return module

    return build


for _name in ENCODERS.names():
    BACKBONES.register(_name, _encoder_backbone(_name))


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
    cfg = getattr(net, "pretrained_cfg", None) or {}
    return _TimmBackbone(net, net.num_features, f"timm:{model_name}",
                         mean=cfg.get("mean", IMAGENET_MEAN), std=cfg.get("std", IMAGENET_STD),
                         in_channels=in_channels)


def check_backbone_weights(backbone: str, weights: str | None, where: str = "config") -> None:
    """Up-front check of ``model.weights`` before any work: ``imagenet`` must resolve to an
    installed weights package (one line naming the package to install otherwise), anything else
    must be an existing file."""
    if not weights:
        return
    if is_pretrained_word(weights):
        if backbone not in WEIGHTS_PACKAGES:
            raise _no_packaged_weights(backbone)
        resolve_packaged(backbone)
        return
    require_path(weights, "model.weights", where=where)


def weights_record(backbone: str, weights: str | None) -> dict[str, str | None]:
    """What a run records about its starting weights: the backbone name and, for packaged
    ImageNet weights, their package, version, file and SHA-256 (a local file: its name and
    SHA-256; never an absolute path)."""
    record: dict[str, str | None] = {"backbone": backbone, "weights": None}
    if is_pretrained_word(weights) and backbone in WEIGHTS_PACKAGES:
        record.update(resolve_packaged(backbone).provenance(), weights="imagenet")
    elif weights and Path(weights).is_file():
        record.update(weights="file", file=Path(weights).name, sha256=sha256_file(weights))
    return record


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
