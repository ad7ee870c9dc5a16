"""ImageNet encoders chosen by name, with features at every stride: MobileNetV2 and Lite0.

An :class:`Encoder` takes images normalised as its weights expect (``input_mean`` /
``input_std``, applied by the caller: the detector :class:`~detectors.backbones.Backbone` or the
generator's :class:`~mrigan.models.PretrainedUNet`) and gives

* ``stages(x)``: five feature maps at strides 2, 4, 8, 16 and 32 (``stage_channels``), the skip
  connections of a U-Net;
* ``head(last)``: the final 1x1 conv to ``feature_dim`` (1280) channels, what a classifier or a
  detector head pools;
* ``logits(x)``: the ImageNet classifier (kept so a packaged checkpoint loads with every key).

Both networks' parameter names are those of the packaged files (:mod:`mrigan.pretrained`), so
``weights="imagenet"`` loads them strictly: every key present, none left over.

``mobilenet_v2`` is torchvision's own ``mobilenet_v2()`` (its ``features`` and ``classifier``).

``efficientnet-lite0`` is written here (no installed package defines it): EfficientNet-B0's 16
MBConv blocks (stages of 1, 2, 2, 3, 3, 4, 1 blocks; kernels 3, 3, 5, 3, 5, 5, 3; expansion 6
except the first) without squeeze-excitation, ReLU6 instead of swish, stem (32) and head (1280)
not scaled, BatchNorm eps 1e-3, TensorFlow "SAME" padding (asymmetric for stride 2, as the
TensorFlow original that the weights come from), and the Lite models' input scaling
``(x - 0.5) / 0.5`` (TensorFlow's ``(x * 255 - 127) / 128``, within 0.4%). Departure: no
stochastic depth (drop connect) in training.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mrigan.pretrained import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    WeightsError,
    is_pretrained_word,
    read_state_dict,
    resolve_packaged,
)
from mrigan.registry import Registry

ENCODERS = Registry("encoder")

#: Parameter prefixes of ImageNet classifiers (dropped by backbones and encoders' users).
CLASSIFIER_PREFIXES = ("fc.", "_fc.", "classifier.", "head.", "AuxLogits.")


class Encoder(nn.Module):
    """Base class; subclasses set the attributes below and implement ``stages`` / ``head``."""

    name: str
    input_mean: tuple[float, ...]
    input_std: tuple[float, ...]
    stage_channels: tuple[int, ...]  # at strides 2, 4, 8, 16, 32
    feature_dim: int

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def head(self, last: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def classifier_layer(self) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def drop_classifier(self) -> None:  # pragma: no cover - abstract
        """Remove the ImageNet classifier (its parameters then reach no optimiser)."""
        raise NotImplementedError

    def stem_conv(self) -> nn.Conv2d:  # pragma: no cover - abstract
        """The first conv."""
        raise NotImplementedError

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` normalised images -> ``(N, feature_dim, H/32, W/32)``."""
        return self.head(self.stages(x)[-1])

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet class scores (before softmax)."""
        pooled = torch.flatten(F.adaptive_avg_pool2d(self.feature_map(x), 1), 1)
        return self.classifier_layer()(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature_map(x)

    def change_in_channels(self, in_channels: int) -> None:
        """A first conv taking ``in_channels`` (:func:`adapt_first_conv_`)."""
        adapt_first_conv_(self.stem_conv(), in_channels)


def adapt_first_conv_(conv: nn.Conv2d, in_channels: int) -> None:
    """Make ``conv`` (a network's first conv, any ``nn.Conv2d`` subclass) take ``in_channels``
    inputs, in place: its kernel becomes the RGB kernel's channel mean, repeated, so loaded
    ImageNet weights still give a sensible start; the bias, padding and stride are kept. Used by
    the encoders and the torchvision backbones alike. (timm's ``adapt_input_conv`` instead keeps
    the response to a grey input: the channel sum for one channel, the kernel repeated and
    scaled by 3 / ``in_channels`` otherwise; ours is that response times ``in_channels`` / 3.)"""
    weight = conv.weight.detach().mean(dim=1, keepdim=True)
    conv.weight = nn.Parameter(weight.expand(-1, in_channels, -1, -1).contiguous())
    conv.in_channels = in_channels


# ----------------------------------------------------------------------------------------------
# MobileNetV2 (torchvision)

#: indices into torchvision's ``features`` after which the stride reaches 2, 4, 8, 16, 32
_MOBILENET_STAGE_ENDS = (1, 3, 6, 13, 17)


class MobileNetV2Encoder(Encoder):
    """torchvision's MobileNetV2; parameter names ``features.*`` / ``classifier.*`` as its
    ImageNet checkpoint."""

    name = "mobilenet_v2"
    input_mean, input_std = IMAGENET_MEAN, IMAGENET_STD

    def __init__(self) -> None:
        super().__init__()
        import torchvision

        net = torchvision.models.mobilenet_v2(weights=None)
        self.features = net.features
        self.classifier = net.classifier
        self.stage_channels = tuple(int(net.features[i].out_channels) for i in
                                    _MOBILENET_STAGE_ENDS)
        self.feature_dim = int(net.last_channel)

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        out, start = [], 0
        for end in _MOBILENET_STAGE_ENDS:
            for i in range(start, end + 1):
                x = self.features[i](x)
            out.append(x)
            start = end + 1
        return out

    def head(self, last: torch.Tensor) -> torch.Tensor:
        return self.features[18](last)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def classifier_layer(self) -> nn.Module:
        return self.classifier

    def drop_classifier(self) -> None:
        self.classifier = nn.Identity()

    def stem_conv(self) -> nn.Conv2d:
        return self.features[0][0]


# ----------------------------------------------------------------------------------------------
# EfficientNet-Lite0

#: (repeats, kernel, stride, expansion, in, out) of each stage, as EfficientNet-B0
LITE0_STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40),
                (3, 3, 2, 6, 40, 80), (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192),
                (1, 3, 1, 6, 192, 320))
#: block indices after which the stride reaches 2, 4, 8, 16, 32
_LITE0_STAGE_ENDS = (0, 2, 4, 10, 15)
_BN_EPS = 1e-3  # TensorFlow's EfficientNet BatchNorm epsilon


class SameConv2d(nn.Conv2d):
    """A bias-free conv with TensorFlow's "SAME" padding: output ``ceil(size / stride)``, the
    odd pixel of padding at the bottom/right (what the TensorFlow-trained weights saw)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1,
                 groups: int = 1) -> None:
        super().__init__(cin, cout, kernel, stride, padding=0, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(x.shape[-1:-3:-1], self.kernel_size[::-1], self.stride[::-1],
                              strict=True):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads) if any(pads) else x)


class _MBConv(nn.Module):
    """Inverted residual without squeeze-excitation (names as efficientnet-pytorch)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = SameConv2d(cin, mid, 1)
            self._bn0 = nn.BatchNorm2d(mid, eps=_BN_EPS)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid)
        self._bn1 = nn.BatchNorm2d(mid, eps=_BN_EPS)
        self._project_conv = SameConv2d(mid, cout, 1)
        self._bn2 = nn.BatchNorm2d(cout, eps=_BN_EPS)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if hasattr(self, "_expand_conv"):
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


class EfficientNetLite0Encoder(Encoder):
    """EfficientNet-Lite0 (see the module docstring); 4.65 M parameters with its classifier."""

    name = "efficientnet-lite0"
    input_mean, input_std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, 2)
        self._bn0 = nn.BatchNorm2d(32, eps=_BN_EPS)
        blocks = []
        for repeats, kernel, stride, expand, cin, cout in LITE0_STAGES:
            for r in range(repeats):
                blocks.append(_MBConv(cin if r == 0 else cout, cout, kernel,
                                      stride if r == 0 else 1, expand))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(320, 1280, 1)
        self._bn1 = nn.BatchNorm2d(1280, eps=_BN_EPS)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(1280, num_classes)
        self.stage_channels = tuple(blocks[i]._bn2.num_features for i in _LITE0_STAGE_ENDS)
        self.feature_dim = 1280
        init_efficientnet_(self)

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        out = []
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in _LITE0_STAGE_ENDS:
                out.append(x)
        return out

    def head(self, last: torch.Tensor) -> torch.Tensor:
        return F.relu6(self._bn1(self._conv_head(last)))

    def classifier_layer(self) -> nn.Module:
        return nn.Sequential(self._dropout, self._fc)

    def drop_classifier(self) -> None:
        self._fc = nn.Identity()
        self._dropout = nn.Identity()

    def stem_conv(self) -> nn.Conv2d:
        return self._conv_stem


def init_efficientnet_(net: nn.Module) -> None:
    """The TensorFlow EfficientNet initialisation (as timm's ``_init_weight_goog``): convs
    He-normal over fan-out (per group), linear layers uniform over fan-out, BN weight 1 / bias 0.
    PyTorch's default conv init leaves an untrained EfficientNet's signal vanishing through its
    BN layers (see :mod:`detectors.backbones`); the detectors' B0-B7 and our Lite0 use this."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0.0, (2.0 / fan_out) ** 0.5)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            bound = 1.0 / (m.weight.size(0) ** 0.5)
            nn.init.uniform_(m.weight, -bound, bound)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


ENCODERS.register("mobilenet_v2", MobileNetV2Encoder)
ENCODERS.register("efficientnet-lite0", EfficientNetLite0Encoder)


# ----------------------------------------------------------------------------------------------
# weights


def load_checked(model: nn.Module, state: dict[str, torch.Tensor], source: str, what: str,
                 ignore: tuple[str, ...] = CLASSIFIER_PREFIXES) -> None:
    """Load ``state`` into ``model``; any missing or unexpected key outside ``ignore`` (the
    classifier, which backbones drop) is a :class:`WeightsError` naming ``source``."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(ignore)]
    unexpected = [k for k in unexpected if not k.startswith(ignore)]
    if missing or unexpected:
        raise WeightsError(
            f"{source}: does not fit {what}: {len(missing)} missing key(s) "
            f"{missing[:5]}, {len(unexpected)} unexpected key(s) {unexpected[:5]}")


def build_encoder(name: str, *, weights: str | None = None
                  ) -> tuple[Encoder, dict[str, str] | None]:
    """Encoder ``name`` from scratch (``weights`` None), with its packaged ImageNet weights
    (``weights="imagenet"``: every key must match) or a local file (the classifier may be
    absent) -> ``(encoder, weights source)``: the source is the packaged weights' provenance
    record (:meth:`~mrigan.pretrained.PackagedWeights.provenance`: package, version, file,
    SHA-256; what backbones keep as ``weights_source`` and generators as ``encoder_source``),
    None from scratch or a local file. On the meta device the weights are only found, not
    read."""
    factory: Callable[[], Encoder] = ENCODERS.get(name)
    net = factory()
    # built on PyTorch's meta device (a config check): find the file, read nothing
    meta = next(net.parameters()).is_meta
    packaged = None
    if is_pretrained_word(weights):
        packaged = resolve_packaged(name)
        if not meta:
            load_checked(net, read_state_dict(packaged.path),
                         f"{packaged.package} {packaged.file}", f"encoder {name!r}", ignore=())
    elif weights:
        if meta and not Path(weights).is_file():
            raise WeightsError(f"{weights}: weights file not found")
        if not meta:
            load_checked(net, read_state_dict(weights), str(weights), f"encoder {name!r}")
    return net, None if packaged is None else packaged.provenance()
