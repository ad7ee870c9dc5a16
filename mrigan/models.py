"""MRI-GAN networks: U-Net generators and PatchGAN discriminators, chosen by name.

Factories in the pix2pix manner::

    G = define_generator("mrigan", image_size=256)     # the paper's U-Net, 54,404,099 params
    D = define_discriminator("mrigan")                 # the paper's PatchGAN, 2,767,808 params
    G = define_generator("unet-mobilenet_v2", 256, encoder_weights="imagenet")  # not the paper's

``paper`` is another name of the paper's U-Net (``mrigan``, the default and the architecture of
every existing file); ``unet-mobilenet_v2`` / ``unet-efficientnet-lite0`` put a pretrained
ImageNet encoder under a light decoder (:class:`EncoderUNet`).

Range convention (the one place it is handled): every generator takes faces in [0, 1] and
returns MRIs in [0, 1]. Internally the networks work on [-1, 1] like the paper's code (inputs
normalised with mean 0.5 / std 0.5, a tanh output); :class:`UnitRangeGenerator` maps faces to
[-1, 1] on the way in and the tanh output to [0, 1] on the way out (:func:`tanh_to_unit`), so
losses, the trainer and inference never see the tanh range. Discriminators also take [0, 1]
(MRI, face) pairs and centre them the same way.

U-Net depth follows the image size (``log2(image_size)`` down blocks, 8 at 256 px), so the same
architecture family gives 64 and 128 px presets that train on a CPU. ``ngf``/``ndf`` scale the
widths for tiny test models.

Parameter names of the ``mrigan`` generator map one-to-one onto the paper's released
``GeneratorUNet`` checkpoints (``down1.model.0.weight`` -> ``downs.0.0.weight``);
:func:`convert_reference_state_dict` does the renaming so released weights load as they are.
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn as nn
import torch.nn.functional as F

from mrigan.encoders import ENCODERS, build_encoder
from mrigan.registry import Registry

GENERATORS = Registry("generator")
DISCRIMINATORS = Registry("discriminator")

#: depth at which U-Net widths stop doubling (ngf * 8), also where the paper's dropout starts
_WIDE_LEVEL = 3


def tanh_to_unit(y: torch.Tensor) -> torch.Tensor:
    """The generator's tanh range [-1, 1] -> the MRI range [0, 1] (float32, clamped)."""
    return y.float().add(1.0).mul_(0.5).clamp_(0.0, 1.0)


def unit_to_signed(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] images -> [-1, 1] network inputs (the paper's Normalize(0.5, 0.5))."""
    return x * 2.0 - 1.0


def level_widths(depth: int, base: int) -> list[int]:
    """Channels of each U-Net level: base, 2*base, 4*base, then 8*base for the rest."""
    return [base * min(2**i, 8) for i in range(depth)]


def depth_for_size(image_size: int, min_depth: int = 2) -> int:
    """Number of stride-2 levels that bring ``image_size`` down to 1x1 (8 for 256 px)."""
    depth = int(round(math.log2(image_size))) if image_size > 0 else 0
    if image_size <= 0 or 2**depth != image_size:
        raise ValueError(f"image_size must be a power of two (64, 128, 256, ...), got {image_size}")
    if depth < min_depth:
        raise ValueError(f"image_size {image_size} is too small: need at least {2**min_depth} px")
    return depth


def init_weights_normal(module: nn.Module, std: float = 0.02) -> None:
    """The paper's (and pix2pix's) init: conv weights ~ N(0, 0.02), conv biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class UnitRangeGenerator(nn.Module):
    """Base class: faces in [0, 1] -> MRIs in [0, 1]; subclasses implement ``forward_signed``.

    ``architecture`` records how the network was built (factory name and arguments) so a
    checkpoint or an exported file can rebuild it.
    """

    architecture: dict

    def forward_signed(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        return tanh_to_unit(self.forward_signed(unit_to_signed(faces)))


# ---------------------------------------------------------------------------------------------
# The paper's U-Net
# ---------------------------------------------------------------------------------------------


def _paper_down(cin: int, cout: int, *, norm: bool, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 4, 2, 1, bias=False)]
    if norm:
        layers.append(nn.InstanceNorm2d(cout))
    layers.append(nn.LeakyReLU(0.2))
    if dropout:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def _paper_up(cin: int, cout: int, *, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False),
        nn.InstanceNorm2d(cout),
        nn.ReLU(inplace=True),
    ]
    if dropout:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class MriGanUNet(UnitRangeGenerator):
    """The paper's generator: a U-Net whose decoder concatenates (upsampled, skip).

    Down blocks: Conv2d(4, s2, p1, no bias) - InstanceNorm (not on the first and innermost
    block) - LeakyReLU(0.2) - Dropout(0.5 from the fourth block on). Up blocks:
    ConvTranspose2d(4, s2, p1, no bias) - InstanceNorm - ReLU - Dropout (where the skip level has
    dropout), then concatenation with the skip. Last block: nearest Upsample x2 - ZeroPad2d
    (1, 0, 1, 0) - Conv2d(4, p1) - Tanh.
    """

    def __init__(self, image_size: int = 256, *, in_channels: int = 3, out_channels: int = 3,
                 ngf: int = 64, dropout: float = 0.5) -> None:
        super().__init__()
        depth = depth_for_size(image_size)
        widths = level_widths(depth, ngf)
        self.image_size = image_size
        self.architecture = {"name": "mrigan", "image_size": image_size, "in_channels": in_channels,
                             "out_channels": out_channels, "ngf": ngf, "dropout": dropout}
        downs = []
        cin = in_channels
        for level, cout in enumerate(widths):
            edge = level in (0, depth - 1)
            drop = dropout if level >= _WIDE_LEVEL else 0.0
            downs.append(_paper_down(cin, cout, norm=not edge, dropout=drop))
            cin = cout
        ups = []
        for k in range(depth - 1):
            skip = depth - 2 - k
            drop = dropout if skip >= _WIDE_LEVEL else 0.0
            ups.append(_paper_up(cin, widths[skip], dropout=drop))
            cin = 2 * widths[skip]
        self.downs = nn.ModuleList(downs)
        self.ups = nn.ModuleList(ups)
        self.final = nn.Sequential(
            nn.Upsample(scale_factor=2),
            nn.ZeroPad2d((1, 0, 1, 0)),
            nn.Conv2d(cin, out_channels, 4, padding=1),
            nn.Tanh(),
        )

    def forward_signed(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for down in self.downs:
            x = down(x)
            skips.append(x)
        for k, up in enumerate(self.ups):
            x = torch.cat((up(x), skips[-2 - k]), 1)
        return self.final(x)


# ---------------------------------------------------------------------------------------------
# The pix2pix reference U-Net (Isola et al.; CycleGAN-and-pix2pix "unet_256"), for comparisons
# ---------------------------------------------------------------------------------------------


class Pix2PixUNet(UnitRangeGenerator):
    """pix2pix's U-Net with InstanceNorm: pre-activation blocks, biases (InstanceNorm has no
    affine), skip concatenated before the upsampled map, dropout in the middle 8*ngf blocks.

    With 8 levels (256 px) and ngf 64 this is pix2pix's ``unet_256``: 54,409,603 parameters.
    """

    def __init__(self, image_size: int = 256, *, in_channels: int = 3, out_channels: int = 3,
                 ngf: int = 64, dropout: float = 0.5, depth: int | None = None,
                 name: str = "pix2pix_unet") -> None:
        super().__init__()
        depth = depth or depth_for_size(image_size)
        if image_size % 2**depth:
            raise ValueError(f"image_size {image_size} is not divisible by 2**{depth}")
        widths = level_widths(depth, ngf)
        self.image_size = image_size
        self.architecture = {"name": name, "image_size": image_size, "in_channels": in_channels,
                             "out_channels": out_channels, "ngf": ngf, "dropout": dropout}
        downs, ups = [], []
        for level in range(depth):
            cin = in_channels if level == 0 else widths[level - 1]
            innermost, outermost = level == depth - 1, level == 0
            # pix2pix applies its LeakyReLU in place at the start of the next block, so the
            # skip it concatenates is the *activated* map; ending each level with the
            # activation gives exactly that, without in-place tricks.
            down: list[nn.Module] = [nn.Conv2d(cin, widths[level], 4, 2, 1)]
            if not (outermost or innermost):
                down.append(nn.InstanceNorm2d(widths[level]))
            if not innermost:
                down.append(nn.LeakyReLU(0.2))
            downs.append(nn.Sequential(*down))

            up_in = widths[level] if innermost else 2 * widths[level]
            up_out = out_channels if outermost else widths[level - 1]
            up: list[nn.Module] = [nn.ReLU(), nn.ConvTranspose2d(up_in, up_out, 4, 2, 1)]
            if outermost:
                up.append(nn.Tanh())
            else:
                up.append(nn.InstanceNorm2d(up_out))
                if dropout and _WIDE_LEVEL < level < depth - 1:
                    up.append(nn.Dropout(dropout))
            ups.append(nn.Sequential(*up))
        self.downs = nn.ModuleList(downs)
        self.ups = nn.ModuleList(ups)

    def forward_signed(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for down in self.downs:
            x = down(x)
            skips.append(x)
        x = self.ups[-1](skips[-1])
        for level in range(len(self.downs) - 2, -1, -1):
            x = self.ups[level](torch.cat((skips[level], x), 1))
        return x


# ---------------------------------------------------------------------------------------------
# U-Nets on a pretrained ImageNet encoder (not in the paper)
# ---------------------------------------------------------------------------------------------


def _decoder_block(cin: int, cout: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                               nn.InstanceNorm2d(cout), nn.ReLU(inplace=True)]
    if dropout:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class EncoderUNet(UnitRangeGenerator):
    """A U-Net whose encoder is an ImageNet network (:mod:`mrigan.encoders`): its feature maps
    at strides 2, 4, 8, 16 and 32 are the skip connections; a light decoder (bilinear x2
    upsampling, concatenation with the skip, 3x3 conv - InstanceNorm - ReLU) goes back to full
    resolution, where the face itself is the last skip, then a 3x3 conv and tanh give the MRI.

    Departure from the paper (whose U-Net, ``mrigan`` alias ``paper``, learns its encoder from
    scratch): the encoder starts from ImageNet weights (``weights="imagenet"``: the packaged
    file, :mod:`mrigan.pretrained`) and is fine-tuned with the decoder; only the decoder gets
    the paper's N(0, 0.02) init. Decoder widths: 4, 2, 1, 1 and 1 x ``ngf`` from stride 16 up;
    dropout (pix2pix's noise) in the two deepest decoder blocks. Faces arrive in [0, 1] and are
    normalised as the encoder's weights expect. ``image_size`` must be a multiple of 32.

    ``prior=True`` (not in the paper): "prior + learned residual". The MRI is a fixed map (the
    training fakes' mean MRI, :func:`mrigan.gan_trainer.training_mean_map`, set by
    :func:`mrigan.train.train_gan` through :meth:`set_prior` and saved with the weights; black
    until set) plus the decoder's tanh output / 2, clamped to [0, 1]; with the decoder's small
    init the untrained generator already outputs the mean map rather than grey.

    ``architecture["encoder_source"]`` records where the encoder's starting weights came from
    (package, version, file, SHA-256; None from scratch); a rebuilt network keeps the record
    and loads nothing (its weights follow from the checkpoint).
    """

    def __init__(self, image_size: int = 256, *, encoder: str, in_channels: int = 3,
                 out_channels: int = 3, ngf: int = 32, dropout: float = 0.5,
                 weights: str | None = None, prior: bool = False,
                 encoder_source: dict[str, str] | None = None) -> None:
        super().__init__()
        if image_size % 32 or image_size < 32:
            raise ValueError(f"image_size must be a multiple of 32 for an encoder U-Net, got "
                             f"{image_size}")
        if in_channels != 3:
            raise ValueError("an encoder U-Net takes RGB faces (in_channels 3)")
        net, source = build_encoder(encoder, weights=weights)
        net.drop_classifier()
        self.encoder = net
        self.image_size = image_size
        record = source if source is not None else encoder_source
        self.architecture = {"name": f"unet-{encoder}", "image_size": image_size,
                             "in_channels": in_channels, "out_channels": out_channels,
                             "ngf": ngf, "dropout": dropout, "prior": bool(prior),
                             "encoder_source": record}
        self.register_buffer("_mean", torch.tensor(net.input_mean).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("_std", torch.tensor(net.input_std).view(1, 3, 1, 1),
                             persistent=False)
        skips = list(net.stage_channels[:-1][::-1]) + [in_channels]  # strides 16, 8, 4, 2, 1
        widths = [4 * ngf, 2 * ngf, ngf, ngf, ngf]
        blocks, cin = [], net.stage_channels[-1]
        for level, (skip, width) in enumerate(zip(skips, widths, strict=True)):
            blocks.append(_decoder_block(cin + skip, width, dropout if level < 2 else 0.0))
            cin = width
        self.decoder = nn.ModuleList(blocks)
        self.final = nn.Sequential(nn.Conv2d(cin, out_channels, 3, padding=1), nn.Tanh())
        self.has_prior = bool(prior)
        if self.has_prior:  # in [-1, 1] like the tanh output; -1 = black until set
            self.register_buffer("mri_prior", torch.full((1, out_channels, image_size,
                                                          image_size), -1.0))

    def set_prior(self, mean_mri: torch.Tensor) -> None:
        """The prior: a ``(C, S, S)`` mean MRI in [0, 1]."""
        if not self.has_prior:
            raise ValueError("this generator was built without prior=True")
        with torch.no_grad():
            self.mri_prior.copy_(unit_to_signed(mean_mri.reshape(self.mri_prior.shape)))

    def initialise(self) -> None:
        """The paper's init on the decoder only (the encoder keeps its ImageNet weights)."""
        init_weights_normal(self.decoder)
        init_weights_normal(self.final)

    def forward_signed(self, x: torch.Tensor) -> torch.Tensor:
        unit = (x + 1.0) * 0.5
        stages = self.encoder.stages((unit - self._mean.to(x.dtype)) / self._std.to(x.dtype))
        skips = stages[-2::-1] + [x]
        y = stages[-1]
        for block, skip in zip(self.decoder, skips, strict=True):
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = block(torch.cat((y, skip), 1))
        if self.has_prior:
            return (self.mri_prior.to(y.dtype) + self.final(y)).clamp(-1.0, 1.0)
        return self.final(y)


# ---------------------------------------------------------------------------------------------
# Discriminators on the (MRI, face) pair
# ---------------------------------------------------------------------------------------------


class PairDiscriminator(nn.Module):
    """A PatchGAN over ``cat(mri, face)``; both in [0, 1], centred to [-1, 1] like the paper."""

    architecture: dict

    def __init__(self, body: nn.Sequential, architecture: dict) -> None:
        super().__init__()
        self.model = body
        self.architecture = architecture

    def forward(self, mri: torch.Tensor, face: torch.Tensor) -> torch.Tensor:
        return self.model(unit_to_signed(torch.cat((mri, face), 1)))


def _d_block(cin: int, cout: int, *, stride: int = 2, norm: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 4, stride, 1)]
    if norm:
        layers.append(nn.InstanceNorm2d(cout))
    layers.append(nn.LeakyReLU(0.2, inplace=True))
    return layers


@DISCRIMINATORS.register("mrigan")
def mrigan_discriminator(in_channels: int = 6, ndf: int = 64, **_ignored) -> PairDiscriminator:
    """The paper's PatchGAN: 64-128-256-512 stride-2 blocks, ZeroPad2d(1,0,1,0), Conv -> 1.

    One output per 16x16 input patch (16x16 outputs at 256 px); 2,767,808 params at ndf 64.
    """
    widths = [ndf, ndf * 2, ndf * 4, ndf * 8]
    layers = _d_block(in_channels, widths[0], norm=False)
    for cin, cout in zip(widths, widths[1:], strict=False):
        layers += _d_block(cin, cout)
    layers += [nn.ZeroPad2d((1, 0, 1, 0)), nn.Conv2d(widths[-1], 1, 4, padding=1, bias=False)]
    return PairDiscriminator(nn.Sequential(*layers),
                             {"name": "mrigan", "in_channels": in_channels, "ndf": ndf})


@DISCRIMINATORS.register("basic")
def nlayer_discriminator(in_channels: int = 6, ndf: int = 64, n_layers: int = 3,
                         **_ignored) -> PairDiscriminator:
    """pix2pix's ``NLayerDiscriminator`` (70x70 PatchGAN at n_layers 3) with InstanceNorm."""
    layers = _d_block(in_channels, ndf, norm=False)
    mult = 1
    for n in range(1, n_layers):
        prev, mult = mult, min(2**n, 8)
        layers += _d_block(ndf * prev, ndf * mult)
    prev, mult = mult, min(2**n_layers, 8)
    layers += _d_block(ndf * prev, ndf * mult, stride=1)
    layers.append(nn.Conv2d(ndf * mult, 1, 4, 1, 1))
    return PairDiscriminator(nn.Sequential(*layers), {"name": "basic", "in_channels": in_channels,
                                                      "ndf": ndf, "n_layers": n_layers})


# ---------------------------------------------------------------------------------------------
# Generator registry and factories
# ---------------------------------------------------------------------------------------------


@GENERATORS.register("mrigan")
def mrigan_generator(image_size: int = 256, **kwargs) -> MriGanUNet:
    return MriGanUNet(image_size, **kwargs)


GENERATORS.register("paper", mrigan_generator)  # the paper's U-Net (records name "mrigan")


def _encoder_unet(encoder: str):
    def build(image_size: int = 256, **kwargs) -> EncoderUNet:
        return EncoderUNet(image_size, encoder=encoder, **kwargs)

    build.__doc__ = f"U-Net on the {encoder} encoder (:class:`EncoderUNet`)."
    return build


#: generator names whose encoder takes ImageNet weights (``define_generator(encoder_weights=)``)
ENCODER_GENERATORS = tuple(f"unet-{name}" for name in ENCODERS.names())
for _name in ENCODERS.names():
    GENERATORS.register(f"unet-{_name}", _encoder_unet(_name))


@GENERATORS.register("pix2pix_unet")
def pix2pix_generator(image_size: int = 256, **kwargs) -> Pix2PixUNet:
    """pix2pix U-Net whose depth follows the image size."""
    return Pix2PixUNet(image_size, **kwargs)


@GENERATORS.register("unet_256")
def unet_256(image_size: int = 256, **kwargs) -> Pix2PixUNet:
    """pix2pix ``unet_256``: 8 levels (needs an image size divisible by 256)."""
    return Pix2PixUNet(image_size, depth=8, name="unet_256", **kwargs)


@GENERATORS.register("unet_128")
def unet_128(image_size: int = 128, **kwargs) -> Pix2PixUNet:
    """pix2pix ``unet_128``: 7 levels."""
    return Pix2PixUNet(image_size, depth=7, name="unet_128", **kwargs)


def define_generator(name: str = "mrigan", image_size: int = 256, *, init: bool = True,
                     encoder_weights: str | None = None, **kwargs) -> UnitRangeGenerator:
    """Build a registered generator (faces [0, 1] -> MRIs [0, 1]) with the paper's init.

    ``encoder_weights`` (``"imagenet"``, a local file or None) goes to the encoder of the
    ``unet-<encoder>`` generators (:data:`ENCODER_GENERATORS`) and is ignored by the others;
    so is ``prior=False``, while ``prior=True`` is refused for them.
    """
    if name in ENCODER_GENERATORS and encoder_weights:
        kwargs["weights"] = encoder_weights
    if kwargs.get("prior") and name not in ENCODER_GENERATORS:
        raise ValueError(f"the MRI prior (model.mri_prior) needs a unet-<encoder> generator "
                         f"({', '.join(ENCODER_GENERATORS)}), not {name!r}")
    if name not in ENCODER_GENERATORS:
        kwargs.pop("prior", None)
    net = GENERATORS.build(name, image_size=image_size, **kwargs)
    if init:
        if isinstance(net, EncoderUNet):
            net.initialise()
        else:
            init_weights_normal(net)
    return net


def define_discriminator(name: str = "mrigan", *, init: bool = True, **kwargs) -> PairDiscriminator:
    """Build a registered (MRI, face) discriminator with the paper's init."""
    net = DISCRIMINATORS.build(name, **kwargs)
    if init:
        init_weights_normal(net)
    return net


def generator_from_architecture(architecture: dict) -> UnitRangeGenerator:
    """Rebuild a generator from its ``architecture`` record (no init: weights follow)."""
    arch = dict(architecture)
    name = arch.pop("name")
    return define_generator(name, init=False, **arch)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


_REFERENCE_KEY = re.compile(r"^(down|up)(\d+)\.model\.(.+)$")


def convert_reference_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a paper-code ``GeneratorUNet`` state dict (``down1.model.0.weight``) to ours.

    Keys that already follow our names pass through unchanged, so this is safe to apply to
    any generator state dict.
    """
    out = {}
    for key, value in state.items():
        m = _REFERENCE_KEY.match(key)
        if m:
            kind, idx, rest = m.groups()
            key = f"{kind}s.{int(idx) - 1}.{rest}"
        out[key] = value
    return out
