"""MRI-GAN networks: exact parameter counts, block structure, shapes, ranges, weight names."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from mrigan import models
from mrigan.models import count_parameters, define_discriminator, define_generator


@pytest.mark.parametrize(("name", "expected"), [("mrigan", 54_404_099), ("unet_256", 54_409_603),
                                                ("pix2pix_unet", 54_409_603)])
def test_generator_parameter_counts_at_256(name, expected):
    assert count_parameters(define_generator(name, 256, init=False)) == expected


@pytest.mark.parametrize(("name", "expected"), [("mrigan", 2_767_808), ("basic", 2_767_809)])
def test_discriminator_parameter_counts_at_6_channels(name, expected):
    assert count_parameters(define_discriminator(name, in_channels=6, init=False)) == expected


def test_paper_unet_blocks_follow_the_paper():
    g = define_generator("mrigan", 256, init=False)
    assert len(g.downs) == 8 and len(g.ups) == 7

    def kinds(block):
        return [type(m) for m in block]

    # first and innermost down blocks have no InstanceNorm; the others do
    norms = [any(isinstance(m, nn.InstanceNorm2d) for m in d) for d in g.downs]
    assert norms == [False, True, True, True, True, True, True, False]
    # dropout from the 4th down block on, and in the up blocks fed by those levels
    assert [any(isinstance(m, nn.Dropout) for m in d) for d in g.downs] == [False] * 3 + [True] * 5
    assert [any(isinstance(m, nn.Dropout) for m in u) for u in g.ups] == [True] * 4 + [False] * 3
    for d in g.downs:
        conv = d[0]
        assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (4, 4)
        assert conv.stride == (2, 2) and conv.padding == (1, 1) and conv.bias is None
        assert isinstance(d[-2 if isinstance(d[-1], nn.Dropout) else -1], nn.LeakyReLU)
    for u in g.ups:
        assert kinds(u)[:3] == [nn.ConvTranspose2d, nn.InstanceNorm2d, nn.ReLU]
    assert kinds(g.final) == [nn.Upsample, nn.ZeroPad2d, nn.Conv2d, nn.Tanh]
    assert g.final[1].padding == (1, 0, 1, 0)


@pytest.mark.parametrize("size", [32, 64, 128])
@pytest.mark.parametrize("name", ["mrigan", "pix2pix_unet"])
def test_generator_depth_follows_size_and_output_is_unit_range(name, size):
    torch.manual_seed(0)
    g = define_generator(name, size, ngf=8)
    assert len(g.downs) == int(math.log2(size))
    x = torch.rand(2, 3, size, size)
    with torch.no_grad():
        y = g(x)
    assert y.shape == x.shape and y.dtype == torch.float32
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert g.architecture["image_size"] == size


def test_tanh_output_is_mapped_to_unit_range_once():
    """Zero the last conv and set its bias: tanh(b) must come out as (tanh(b) + 1) / 2."""
    g = define_generator("mrigan", 32, ngf=4).eval()
    last = g.final[2]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([math.atanh(-0.6), 0.0, math.atanh(0.6)]))
    y = g(torch.rand(1, 3, 32, 32))
    for c, expected in enumerate([0.2, 0.5, 0.8]):
        assert torch.allclose(y[0, c], torch.full((32, 32), expected), atol=1e-6)
    assert models.tanh_to_unit(torch.tensor([-1.0, 0.0, 1.0])).tolist() == [0.0, 0.5, 1.0]


def test_discriminator_patch_grids():
    mri, face = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    assert define_discriminator("mrigan")(mri, face).shape == (2, 1, 4, 4)  # one per 16 px
    assert define_discriminator("basic")(mri, face).shape == (2, 1, 6, 6)  # 70x70 PatchGAN
    d = define_discriminator("mrigan").eval()
    # the pair is concatenated as (MRI, face): swapping them changes the score
    assert not torch.allclose(d(mri, face), d(face, mri))


def test_paper_init_statistics():
    torch.manual_seed(1)
    g = define_generator("mrigan", 128)
    w = torch.cat([m.weight.detach().flatten() for m in g.modules()
                   if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)])
    assert abs(float(w.mean())) < 1e-3 and abs(float(w.std()) - 0.02) < 1e-3
    assert float(g.final[2].bias.detach().abs().max()) == 0.0


def test_same_seed_same_weights():
    torch.manual_seed(3)
    a = define_generator("mrigan", 64, ngf=8).state_dict()
    torch.manual_seed(3)
    b = define_generator("mrigan", 64, ngf=8).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_reference_checkpoint_names_are_converted():
    """Paper-code names (down1.model.0.weight, up7.model.0.weight, final.2.bias) load into ours."""
    g = define_generator("mrigan", 256, init=False)
    ours = g.state_dict()
    reference = {}
    for k, v in ours.items():
        kind, idx, rest = k.split(".", 2) if k.startswith(("downs.", "ups.")) else (None, None, k)
        key = f"{kind[:-1]}{int(idx) + 1}.model.{rest}" if kind else rest
        reference[key] = v.clone() + 1.0
    assert "down1.model.0.weight" in reference and "up7.model.0.weight" in reference
    assert "final.2.bias" in reference
    g.load_state_dict(models.convert_reference_state_dict(reference))
    assert torch.equal(g.downs[0][0].weight, reference["down1.model.0.weight"])


def test_unknown_names_and_sizes_are_clear_errors():
    with pytest.raises(KeyError, match="known: .*mrigan"):
        define_generator("resnet_9blocks", 256)
    with pytest.raises(KeyError, match="basic"):
        define_discriminator("pixelgan")
    with pytest.raises(ValueError, match="power of two"):
        define_generator("mrigan", 100)


def test_generator_rebuilds_from_its_architecture_record():
    torch.manual_seed(0)
    g = define_generator("pix2pix_unet", 64, ngf=8, dropout=0.0)
    h = models.generator_from_architecture(g.architecture)
    h.load_state_dict(g.state_dict())
    x = torch.rand(1, 3, 64, 64)
    assert torch.equal(g.eval()(x), h.eval()(x))
