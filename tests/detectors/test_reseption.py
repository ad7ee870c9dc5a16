"""Reseption V1/V2 (thesis chapter 6): sizes against Table 7.1, grids, blocks, ensemble."""

from __future__ import annotations

import pytest
import torch
import torchvision
from safetensors.torch import save_file
from torch import nn

from detectors.backbones import BACKBONES, build_backbone
from detectors.heads import LinearHead
from detectors.model import FrameDetector
from detectors.reseption import V1, V2, ReseptionBody, ReseptionEnsemble, count_macs

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Thesis Table 7.1 (THOP, 299x299, one output neuron): params (M), MACs (G).
TABLE_7_1 = {"reseption-v1": (16.89, 5.15), "reseption-v2": (15.75, 4.79)}


def _single_neuron(name: str) -> nn.Module:
    backbone, dim = build_backbone(name)
    return FrameDetector(backbone, LinearHead(dim)).eval()


def test_mac_counter_reproduces_thop_on_inception_v3():
    # Table 7.1's tool gave Inception V3 (no aux, one output) 5.73 G MACs and 21.79 M params.
    net = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False,
                                          num_classes=1).eval()
    assert sum(p.numel() for p in net.parameters()) / 1e6 == pytest.approx(21.79, abs=0.005)
    assert count_macs(net, torch.zeros(1, 3, 299, 299)) / 1e9 == pytest.approx(5.73, abs=0.005)


@pytest.mark.parametrize("name", ["reseption-v1", "reseption-v2"])
def test_parameters_and_macs_match_table_7_1(name):
    params, macs = TABLE_7_1[name]
    model = _single_neuron(name)
    n = sum(p.numel() for p in model.parameters()) / 1e6
    assert n == pytest.approx(params, rel=0.01)
    assert count_macs(model, torch.zeros(1, 3, 299, 299)) / 1e9 == pytest.approx(macs, rel=0.03)


@pytest.mark.parametrize("spec", [V1, V2])
def test_block_outputs_on_35_17_8_grids(spec):
    body = ReseptionBody(spec).eval()
    ca, cb, cc = spec.widths
    # the thesis' filter banks decide the reductions' widths: +m+96 and +b+f
    assert cb - ca == spec.m + 96 and cc - cb == spec.abcdef[1] + spec.abcdef[5]
    expected = {"stem": (ca, 35), "blocks_a": (ca, 35), "reduction_a": (cb, 17),
                "blocks_b": (cb, 17), "reduction_b": (cc, 8), "blocks_c": (cc, 8)}
    x = torch.zeros(1, 3, 299, 299)
    with torch.no_grad():
        for name, stage in body.named_children():
            x = stage(x)
            channels, grid = expected[name]
            assert tuple(x.shape) == (1, channels, grid, grid), name
    assert (spec.m, spec.abcdef) == {
        "reseption-v1": (224, (192, 320, 192, 192, 256, 320)),
        "reseption-v2": (336, (256, 392, 256, 256, 320, 392)),
    }[spec.name]


def test_v1_concatenates_v2_remaps_and_both_use_leaky_relu_0_2():
    v1, v2 = ReseptionBody(V1), ReseptionBody(V2)
    assert all(isinstance(b.remap, nn.Identity) for b in [*v1.blocks_a, *v1.blocks_b,
                                                           *v1.blocks_c])
    for block in [*v2.blocks_a, *v2.blocks_b, *v2.blocks_c]:
        assert isinstance(block.remap.conv, nn.Conv2d) and block.remap.conv.kernel_size == (1, 1)
    for body in (v1, v2):
        acts = [m for m in body.modules() if isinstance(m, nn.LeakyReLU)]
        assert acts and all(m.negative_slope == 0.2 for m in acts)
        assert not any(isinstance(m, nn.ReLU) for m in body.modules())


def test_residual_block_adds_the_identity():
    block = ReseptionBody(V1).blocks_a[0].eval()
    x = torch.randn(1, 256, 35, 35)
    with torch.no_grad():
        branches = torch.cat([b(x) for b in block.branches], 1)
        expected = nn.functional.leaky_relu(x + branches, 0.2)
        torch.testing.assert_close(block(x), expected)


def test_registered_backbones_build_small_inputs_and_load_weights(tmp_path):
    assert {"reseption-v1", "reseption-v2", "reseption-ensemble"} <= set(BACKBONES.names())
    module, dim = build_backbone("reseption-v2", in_channels=1)
    module.eval()
    x = torch.rand(2, 1, 96, 96)
    with torch.no_grad():
        vec = module(x)
    assert dim == V2.widths[2] and vec.shape == (2, dim)
    path = tmp_path / "v2.safetensors"
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(path))
    again, _ = build_backbone("reseption-v2", in_channels=1, weights=str(path))
    again.eval()
    with torch.no_grad():
        torch.testing.assert_close(again(x), vec)
    pair, pair_dim = build_backbone("reseption-ensemble")
    assert pair_dim == V1.widths[2] + V2.widths[2]


def test_ensemble_averages_the_members_probabilities():
    torch.manual_seed(0)
    members = [_single_neuron("reseption-v1"), _single_neuron("reseption-v2")]
    ensemble = ReseptionEnsemble(members).eval()
    x = torch.rand(3, 3, 96, 96)
    with torch.no_grad():
        probs = [torch.sigmoid(m(x)) for m in members]
        got = torch.sigmoid(ensemble(x))
    torch.testing.assert_close(got, (probs[0] + probs[1]) / 2, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError):
        ReseptionEnsemble(members[:1])
