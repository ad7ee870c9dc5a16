"""Reseption V1 and V2: the thesis' small Inception-with-residuals detectors (chapter 6).

Source: ``../shared/seeds/002_39727e56c0b11144.txt`` (thesis, chapter 6 and Table 7.1).

What the thesis states, and this module follows:

* every "Conv" is Inception's BasicConv2d (conv without bias, BatchNorm, activation), the
  activation being Leaky ReLU with negative slope 0.2; weights xavier-normal with the Leaky-ReLU
  gain ``sqrt(2 / (1 + 0.2**2))`` (section 7.1.1);
* no auxiliary branches; a stem almost identical to Inception V3's, V1 and V2 differing only
  near its output;
* blocks A / B / C for 35x35 / 17x17 / 8x8 grids (at a 299x299 input) with residual
  (identity) connections; V1 concatenates its (larger) filter banks and adds the concatenation
  to the identity, V2 reduces dimensions (1x1) before its large filters and remaps the
  concatenation with a 1x1 convolution before the sum;
* reduction block A (Inception V3's ``Mixed_6a`` form, 35 -> 17) with filter bank ``m`` =
  224 (V1) / 336 (V2); reduction block B (``Mixed_7a`` form, 17 -> 8) with ``(a, b, c, d, e,
  f)`` = (192, 320, 192, 192, 256, 320) (V1) / (256, 392, 256, 256, 320, 392) (V2);
* a single output neuron after the fully connected layer (the detector's head here);
* size: 16.89 M parameters and 5.15 G MACs (V1), 15.75 M and 4.79 G (V2) at 299x299 with one
  output neuron (Table 7.1, counted with THOP).

Where the thesis is silent (its Figures 6.2 - 6.11 with the filter counts are images that the
text copy does not hold), the choices below are ours, made so that the networks keep the stated
structure **and** land on Table 7.1's parameter and MAC counts (tested within 1 % / 3 %):

* Reduction A: ``m`` is the stride-2 3x3 branch (Inception V3's 384); the double-3x3 branch
  keeps Inception V3's 64 -> 96 -> 96. Reduction B: ``a`` 1x1 -> ``b`` 3x3/2 and ``c`` 1x1 ->
  ``d`` 1x7 -> ``e`` 7x1 -> ``f`` 3x3/2, plus the max-pool branch (Inception V3's order of its
  six convolutions). Output widths are therefore ``m + 96 + C_A`` and ``b + f + C_B``.
* Stem: Inception V3's up to the 71x71 stage; its last 3x3 convolution gives the block-A width
  (V1 256, V2 288: "the difference near the output").
* Block counts: 3 x A, 4 x B, 2 x C, as Inception V3 (3 x Mixed_5, 4 x Mixed_6, 2 x Mixed_7).
* V1 blocks are Inception V3's A / C / E modules with narrower banks, summed with the identity
  and then activated; V2 blocks are Inception-ResNet-style bottlenecks whose 1x1 remap is
  linear (conv + BatchNorm, no activation) before the sum, as in Inception-ResNet.
* No residual scaling (Inception-ResNet's 0.1 - 0.3): the thesis does not mention any.
* The ensemble (:class:`ReseptionEnsemble`) averages the two detectors' probabilities. The
  thesis' ensemble (34 M parameters, Figure 7.7) instead trains fully connected layers over the
  two frozen bodies; that form is available as the ``reseption-ensemble`` backbone (the two
  bodies' 8x8 maps concatenated) under any head.

Registration: importing this module registers ``reseption-v1``, ``reseption-v2`` and
``reseption-ensemble`` in :data:`detectors.backbones.BACKBONES`; ``detectors/__init__.py``
imports it, so ``build_backbone('reseption-v1')`` works wherever ``detectors`` is imported
(no import cycle: ``detectors`` -> ``detectors.reseption`` -> ``detectors.backbones``).

Length (~420 lines): one file on purpose - both variants share the stem, reduction blocks and
builders, and the block-by-block mapping to the thesis' figures reads best in one place.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from detectors.backbones import BACKBONES, Backbone, _load_weights

NEGATIVE_SLOPE = 0.2


class BasicConv2d(nn.Module):
    """Inception's BasicConv2d (thesis Figure 6.1): conv (no bias) -> BatchNorm -> LeakyReLU.

    ``act=False`` gives the linear conv + BatchNorm used by V2's 1x1 remap before the sum.
    """

    def __init__(self, cin: int, cout: int, kernel_size, stride=1, padding=0,
                 act: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)
        self.act = nn.LeakyReLU(NEGATIVE_SLOPE, inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


def _seq(*convs: nn.Module) -> nn.Sequential:
    return nn.Sequential(*convs)


def _pool_branch(cin: int, cout: int) -> nn.Sequential:
    return _seq(nn.AvgPool2d(3, stride=1, padding=1), BasicConv2d(cin, cout, 1))


class _Residual(nn.Module):
    """``act(x + remap(concat(branches(x))))``; ``remap`` is Identity for V1."""

    def __init__(self, branches: Sequence[nn.Module], remap: nn.Module | None = None) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.remap = remap if remap is not None else nn.Identity()
        self.act = nn.LeakyReLU(NEGATIVE_SLOPE, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.remap(torch.cat([b(x) for b in self.branches], 1))
        return self.act(x + out)


# ---------------------------------------------------------------------------------------------
# V1 blocks: Inception V3 modules, narrower, concatenation summed with the identity


def v1_block_a(c: int, b1: int, b5: tuple[int, int], b3: tuple[int, int, int], bp: int):
    """35x35 (Inception V3 A): 1x1 | 1x1 -> 5x5 | 1x1 -> 3x3 -> 3x3 | avgpool -> 1x1."""
    assert b1 + b5[1] + b3[2] + bp == c, "V1 block A: concatenation must equal the input width"
    return _Residual([
        BasicConv2d(c, b1, 1),
        _seq(BasicConv2d(c, b5[0], 1), BasicConv2d(b5[0], b5[1], 5, padding=2)),
        _seq(BasicConv2d(c, b3[0], 1), BasicConv2d(b3[0], b3[1], 3, padding=1),
             BasicConv2d(b3[1], b3[2], 3, padding=1)),
        _pool_branch(c, bp),
    ])


def v1_block_b(c: int, out: int, c7: int):
    """17x17 (Inception V3 C): 1x1 | 1x1 -> 1x7 -> 7x1 | 1x1 -> (7x1 -> 1x7) x 2 | pool; each
    branch ``out`` wide (4 * out == c)."""
    assert 4 * out == c, "V1 block B: concatenation must equal the input width"
    return _Residual([
        BasicConv2d(c, out, 1),
        _seq(BasicConv2d(c, c7, 1), BasicConv2d(c7, c7, (1, 7), padding=(0, 3)),
             BasicConv2d(c7, out, (7, 1), padding=(3, 0))),
        _seq(BasicConv2d(c, c7, 1), BasicConv2d(c7, c7, (7, 1), padding=(3, 0)),
             BasicConv2d(c7, c7, (1, 7), padding=(0, 3)),
             BasicConv2d(c7, c7, (7, 1), padding=(3, 0)),
             BasicConv2d(c7, out, (1, 7), padding=(0, 3))),
        _pool_branch(c, out),
    ])


class _Split(nn.Module):
    """A stem followed by parallel 1x3 / 3x1 convolutions, concatenated (Inception V3 E)."""

    def __init__(self, stem: nn.Module, cin: int, cout: int) -> None:
        super().__init__()
        self.stem = stem
        self.a = BasicConv2d(cin, cout, (1, 3), padding=(0, 1))
        self.b = BasicConv2d(cin, cout, (3, 1), padding=(1, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.stem(x)
        return torch.cat([self.a(y), self.b(y)], 1)


def v1_block_c(c: int, b1: int, r3: int, o3: int, rd: tuple[int, int], od: int, bp: int):
    """8x8 (Inception V3 E): 1x1 | 1x1 -> (1x3, 3x1) | 1x1 -> 3x3 -> (1x3, 3x1) | pool."""
    assert b1 + 2 * o3 + 2 * od + bp == c, "V1 block C: concatenation must equal the input width"
    return _Residual([
        BasicConv2d(c, b1, 1),
        _Split(BasicConv2d(c, r3, 1), r3, o3),
        _Split(_seq(BasicConv2d(c, rd[0], 1), BasicConv2d(rd[0], rd[1], 3, padding=1)),
               rd[1], od),
        _pool_branch(c, bp),
    ])


# ---------------------------------------------------------------------------------------------
# V2 blocks: reduce (1x1) before the large filters, remap the concatenation (1x1) before the sum


def v2_block_a(c: int, w: int):
    """35x35: 1x1 w | 1x1 w -> 3x3 w | 1x1 w -> 3x3 3w/2 -> 3x3 2w; 1x1 remap 4w -> c."""
    cat = w + w + 2 * w
    return _Residual([
        BasicConv2d(c, w, 1),
        _seq(BasicConv2d(c, w, 1), BasicConv2d(w, w, 3, padding=1)),
        _seq(BasicConv2d(c, w, 1), BasicConv2d(w, w * 3 // 2, 3, padding=1),
             BasicConv2d(w * 3 // 2, 2 * w, 3, padding=1)),
    ], remap=BasicConv2d(cat, c, 1, act=False))


def v2_block_b(c: int, b1: int, r: int, o: int):
    """17x17: 1x1 b1 | 1x1 r -> 1x7 -> 7x1 o; 1x1 remap (b1 + o) -> c."""
    return _Residual([
        BasicConv2d(c, b1, 1),
        _seq(BasicConv2d(c, r, 1), BasicConv2d(r, r, (1, 7), padding=(0, 3)),
             BasicConv2d(r, o, (7, 1), padding=(3, 0))),
    ], remap=BasicConv2d(b1 + o, c, 1, act=False))


def v2_block_c(c: int, b1: int, r: int, o: int):
    """8x8: 1x1 b1 | 1x1 r -> (1x3 o, 3x1 o); 1x1 remap (b1 + 2o) -> c."""
    return _Residual([
        BasicConv2d(c, b1, 1),
        _Split(BasicConv2d(c, r, 1), r, o),
    ], remap=BasicConv2d(b1 + 2 * o, c, 1, act=False))


# ---------------------------------------------------------------------------------------------
# stem and reduction blocks (shared structure)


def stem(in_channels: int, out: int) -> nn.Sequential:
    """Inception V3's stem (299 -> 35); the last 3x3 conv gives ``out`` channels."""
    return _seq(
        BasicConv2d(in_channels, 32, 3, stride=2), BasicConv2d(32, 32, 3),
        BasicConv2d(32, 64, 3, padding=1), nn.MaxPool2d(3, stride=2),
        BasicConv2d(64, 80, 1), BasicConv2d(80, out, 3), nn.MaxPool2d(3, stride=2),
    )


class _Concat(nn.Module):
    def __init__(self, *branches: nn.Module) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([b(x) for b in self.branches], 1)


def reduction_a(c: int, m: int) -> _Concat:
    """Thesis Figure 6.10 (35 -> 17): 3x3/2 ``m`` | 1x1 64 -> 3x3 96 -> 3x3/2 96 | maxpool."""
    return _Concat(
        BasicConv2d(c, m, 3, stride=2),
        _seq(BasicConv2d(c, 64, 1), BasicConv2d(64, 96, 3, padding=1),
             BasicConv2d(96, 96, 3, stride=2)),
        nn.MaxPool2d(3, stride=2),
    )


def reduction_b(c: int, abcdef: Sequence[int]) -> _Concat:
    """Thesis Figure 6.11 (17 -> 8): 1x1 a -> 3x3/2 b | 1x1 c -> 1x7 d -> 7x1 e -> 3x3/2 f |
    maxpool."""
    a, b, cc, d, e, f = abcdef
    return _Concat(
        _seq(BasicConv2d(c, a, 1), BasicConv2d(a, b, 3, stride=2)),
        _seq(BasicConv2d(c, cc, 1), BasicConv2d(cc, d, (1, 7), padding=(0, 3)),
             BasicConv2d(d, e, (7, 1), padding=(3, 0)), BasicConv2d(e, f, 3, stride=2)),
        nn.MaxPool2d(3, stride=2),
    )


# ---------------------------------------------------------------------------------------------
# the networks


@dataclass(frozen=True)
class ReseptionSpec:
    """Widths of one variant (see the module docstring for which numbers are the thesis')."""

    name: str
    style: str  # "v1": concatenation + identity; "v2": bottleneck + 1x1 remap + identity
    stem_out: int  # block-A width (ours)
    m: int  # reduction A (thesis)
    abcdef: tuple[int, int, int, int, int, int]  # reduction B (thesis)
    blocks: tuple[int, int, int] = (3, 4, 2)  # A, B, C counts (ours: Inception V3's)

    @property
    def widths(self) -> tuple[int, int, int]:
        """Channels at the 35x35, 17x17 and 8x8 grids."""
        a = self.stem_out
        b = a + self.m + 96
        return a, b, b + self.abcdef[1] + self.abcdef[5]


V1 = ReseptionSpec("reseption-v1", "v1", stem_out=256, m=224, abcdef=(192, 320, 192, 192, 256, 320))
V2 = ReseptionSpec("reseption-v2", "v2", stem_out=288, m=336, abcdef=(256, 392, 256, 256, 320, 392))


def _v1_blocks(spec: ReseptionSpec) -> tuple[list[nn.Module], list[nn.Module], list[nn.Module]]:
    ca, cb, cc = spec.widths  # 256, 576, 1216
    na, nb, nc = spec.blocks
    a = [v1_block_a(ca, 64, (48, 64), (64, 96, 96), 32) for _ in range(na)]
    b = [v1_block_b(cb, cb // 4, 152) for _ in range(nb)]
    c = [v1_block_c(cc, 192, 320, 224, (480, 384), 224, 128) for _ in range(nc)]
    return a, b, c


def _v2_blocks(spec: ReseptionSpec) -> tuple[list[nn.Module], list[nn.Module], list[nn.Module]]:
    ca, cb, cc = spec.widths  # 288, 720, 1504
    na, nb, nc = spec.blocks
    a = [v2_block_a(ca, 40) for _ in range(na)]
    b = [v2_block_b(cb, 192, 160, 240) for _ in range(nb)]
    c = [v2_block_c(cc, 256, 352, 384) for _ in range(nc)]
    return a, b, c


_BLOCKS = {"v1": _v1_blocks, "v2": _v2_blocks}


class ReseptionBody(nn.Module):
    """Stem -> A blocks (35x35) -> reduction A -> B blocks (17x17) -> reduction B -> C blocks
    (8x8); ``forward`` returns the last ``(N, widths[2], 8, 8)`` map at a 299 input.

    ``stages`` (named children) lets tests read each block's output size.
    """

    def __init__(self, spec: ReseptionSpec, in_channels: int = 3) -> None:
        super().__init__()
        self.spec = spec
        ca, cb, _ = spec.widths
        a, b, c = _BLOCKS[spec.style](spec)
        self.stem = stem(in_channels, spec.stem_out)
        self.blocks_a = nn.Sequential(*a)
        self.reduction_a = reduction_a(ca, spec.m)
        self.blocks_b = nn.Sequential(*b)
        self.reduction_b = reduction_b(cb, spec.abcdef)
        self.blocks_c = nn.Sequential(*c)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.children():
            x = stage(x)
        return x


def init_weights(module: nn.Module) -> None:
    """Thesis 7.1.1: xavier-normal with the Leaky-ReLU gain; BatchNorm weight 1, bias 0."""
    gain = math.sqrt(2.0 / (1 + NEGATIVE_SLOPE**2))
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_normal_(m.weight, gain=gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _builder(spec: ReseptionSpec):
    def build(*, in_channels: int = 3, weights: str | None = None) -> Backbone:
        body = ReseptionBody(spec, in_channels)
        module = Backbone(body, spec.widths[2], spec.name)
        if weights:
            _load_weights(module, weights, spec.name)
        return module

    build.__doc__ = f"{spec.name}: the thesis' network from scratch (see detectors.reseption)."
    return build


class _PairBody(nn.Module):
    """Both bodies on the same image; their last maps concatenated along channels."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.v1 = ReseptionBody(V1, in_channels)
        self.v2 = ReseptionBody(V2, in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.v1(x), self.v2(x)], 1)


def reseption_ensemble_backbone(*, in_channels: int = 3, weights: str | None = None) -> Backbone:
    """The thesis' ensemble form (Figure 7.7): V1 and V2 bodies side by side, features
    concatenated (``1216 + 1504`` channels) for a trained head. Load trained V1/V2 weights into
    ``.body.v1`` / ``.body.v2`` and freeze them to repeat the thesis' recipe."""
    module = Backbone(_PairBody(in_channels), V1.widths[2] + V2.widths[2], "reseption-ensemble")
    if weights:
        _load_weights(module, weights, "reseption-ensemble")
    return module


BACKBONES.register("reseption-v1", _builder(V1))
BACKBONES.register("reseption-v2", _builder(V2))
BACKBONES.register("reseption-ensemble", reseption_ensemble_backbone)


class ReseptionEnsemble(nn.Module):
    """Averages the probabilities of several trained frame detectors (V1 and V2 in the thesis).

    ``forward`` returns the logit of the mean probability, so it drops in wherever a detector's
    logits are expected (``sigmoid(forward(x))`` is the mean of the members' probabilities).
    """

    temporal = False

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError("an ensemble needs at least two detectors")
        self.members = nn.ModuleList(members)

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.sigmoid(m(images).float()) for m in self.members]).mean(0)

    def forward(self, images: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return torch.logit(self.probabilities(images), eps=1e-7)


def count_macs(module: nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass per image, counted as THOP counts them (conv,
    linear, BatchNorm as 2 per element; activations and pooling free) - the thesis' Table 7.1
    tool. Checked against THOP's 5.73 G for Inception V3 at 299 in the tests."""
    total = 0

    def hook(m: nn.Module, _inp, out: torch.Tensor) -> None:
        nonlocal total
        per_image = out.numel() // out.shape[0]
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1] * m.in_channels // m.groups
            total += per_image * k
        elif isinstance(m, nn.Linear):
            total += m.in_features * m.out_features
        elif isinstance(m, nn.BatchNorm2d):
            total += 2 * per_image

    handles = [m.register_forward_hook(hook) for m in module.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d))]
    try:
        with torch.no_grad():
            module(x)
    finally:
        for h in handles:
            h.remove()
    return total


__all__ = ["V1", "V2", "ReseptionBody", "ReseptionEnsemble", "ReseptionSpec", "count_macs",
           "init_weights", "reseption_ensemble_backbone"]

