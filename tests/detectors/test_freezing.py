"""Backbone freezing / gradual unfreezing (issue 13 item 5): the per-epoch schedule, block
groups of real backbones, frozen weights and BatchNorm statistics unchanged by training steps
while unfrozen ones move, and the hook in the detector trainer (through a resumed run)."""

from __future__ import annotations

import pytest
import torch

from datasets_builders.synthetic import write_synthetic_mri_df
from detectors.backbones import build_backbone
from detectors.config import (
    DetectorConfig,
    DetectorDataConfig,
    DetectorModelConfig,
    DetectorTrainConfig,
)
from detectors.freezing import (
    FreezeConfig,
    Freezer,
    backbone_blocks,
    block_groups,
    trainable_groups,
)
from detectors.model import build_detector
from detectors.train import train_detector
from mrigan.checkpoint import load_checkpoint, seed_everything
from mrigan.config import ConfigError, from_dict, load_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize(("cfg", "expected"), [
    (FreezeConfig(), [4] * 7),
    (FreezeConfig(backbone_until_epoch=2, unfreeze="gradual", groups=4), [0, 0, 1, 2, 3, 4, 4]),
    (FreezeConfig(backbone_until_epoch=2, unfreeze="all", groups=4), [0, 0, 4, 4, 4, 4, 4]),
    (FreezeConfig(backbone_until_epoch=1, unfreeze="gradual", max_unfrozen=2), [0, 1, 2, 2, 2, 2, 2]),
    (FreezeConfig(max_unfrozen=1), [1] * 7),  # the study's fixed "last layers unfrozen"
    (FreezeConfig(unfreeze="gradual"), [1, 2, 3, 4, 4, 4, 4]),
])
def test_schedule_per_epoch(cfg, expected):
    assert [trainable_groups(cfg, 4, e) for e in range(7)] == expected


def test_config_from_yaml_dict_and_bad_values():
    preset = load_config(DetectorConfig, "configs/detector_gradual_unfreeze.yaml")
    assert preset.train.freeze == FreezeConfig(1, "gradual", 4, 0)
    assert [trainable_groups(preset.train.freeze, 4, e) for e in range(6)] == [0, 1, 2, 3, 4, 4]
    cfg = from_dict(DetectorTrainConfig, {"freeze": {"backbone_until_epoch": 2, "unfreeze": "gradual",
                                             "groups": 3}})
    assert cfg.freeze == FreezeConfig(2, "gradual", 3, 0)
    with pytest.raises(ConfigError, match="FreezeConfig.unfreeze: 'sometimes' is not one of"):
        FreezeConfig(unfreeze="sometimes")
    with pytest.raises(ConfigError, match="FreezeConfig.groups: -1 is below the minimum 0"):
        FreezeConfig(groups=-1)


@pytest.mark.parametrize(("name", "n_blocks"), [
    ("tiny-cnn", 4),  # conv + its BatchNorm, four times
    ("resnet18", 5),  # conv1 + bn1, layer1..layer4
    ("efficientnet-b0", 18),  # stem, 16 MBConv blocks, head conv
])
def test_block_groups_cover_every_parameter_once(name, n_blocks):
    backbone, _ = build_backbone(name)
    assert len(backbone_blocks(backbone)) == n_blocks
    for groups in (0, 3):
        found = block_groups(backbone, groups)
        assert len(found) == (n_blocks if groups == 0 else 3)
        ids = [id(p) for g in found for p in g.params]
        assert len(ids) == len(set(ids)) == len(list(backbone.parameters()))
    sizes = [len(g.modules) for g in block_groups(backbone, 3)]
    assert max(sizes) - min(sizes) <= 2  # near-equal block counts (a block may carry its BN)


def _train_steps(model, freezer, opt, epoch, steps=2):
    freezer.apply(epoch)
    model.train()
    freezer.freeze_norm_stats()
    g = torch.Generator().manual_seed(epoch)
    for _ in range(steps):
        x = torch.rand(4, 3, 64, 64, generator=g)
        y = torch.tensor([0.0, 1.0, 0.0, 1.0])
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for group in freezer.frozen_groups():
            assert all(p.grad is None for p in group.params)
        opt.step()


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(before, module, prefixes):
    now = module.state_dict()
    return {k for k in before if k.startswith(prefixes) and not torch.equal(before[k], now[k])}


def test_frozen_groups_do_not_move_and_unfrozen_ones_do_efficientnet_b0():
    """EfficientNet-B0 at 64 px in 3 groups; epoch 0 head only, epoch 1 the top group."""
    torch.manual_seed(0)
    model = build_detector(DetectorModelConfig(backbone="efficientnet-b0", dropout=0.0))
    freezer = Freezer(model, FreezeConfig(backbone_until_epoch=1, unfreeze="gradual", groups=3))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    before = _snapshot(model)
    _train_steps(model, freezer, opt, epoch=0)
    assert _changed(before, model, ("backbone.",)) == set()  # weights and BN statistics
    assert _changed(before, model, ("head.",)) == {k for k in before if k.startswith("head.")}

    names = {id(p): n for n, p in model.named_parameters()}
    top = {names[id(p)] for p in freezer.groups[-1].params}
    assert "backbone.body.net._conv_head.weight" in top
    before = _snapshot(model)
    _train_steps(model, freezer, opt, epoch=1)
    assert freezer.trainable == 1
    moved = _changed(before, model, ("backbone.",))
    assert {k for k in moved if not k.endswith(("running_mean", "running_var",
                                                "num_batches_tracked"))} == top
    assert "backbone.body.net._bn1.running_mean" in moved  # unfrozen BN keeps learning stats
    assert not {k for k in moved if k.startswith(("backbone.body.net._conv_stem",
                                                  "backbone.body.net._bn0",
                                                  "backbone.body.net._blocks.0."))}


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    return write_synthetic_mri_df(tmp_path_factory.mktemp("syn"), n_faces=8, size=48,
                                  fakes_per_face=1, val_fraction=0.25, seed=2)


def test_trainer_unfreezes_top_group_at_its_epoch(synthetic_root, tmp_path):
    """train_detector with backbone_until_epoch=1, gradual, 4 groups: between the end of epoch 0
    and the end of epoch 1 only tiny-cnn's top conv + BN (and the head) change; after epoch 0
    the backbone is still exactly its initial state (frozen BN statistics included)."""
    def cfg(epochs, freeze):
        return DetectorConfig(
            name="frz", out_dir=str(tmp_path), model=DetectorModelConfig(backbone="tiny-cnn"),
            data=DetectorDataConfig(root=str(synthetic_root), image_size=32, workers=0),
            train=DetectorTrainConfig(epochs=epochs, batch_size=4, lr=1e-2, device="cpu",
                              precision="fp32", augment=("flip",), log_every=1, freeze=freeze))

    freeze = FreezeConfig(backbone_until_epoch=1, unfreeze="gradual", groups=4)
    lines = []
    train_detector(cfg(1, freeze), log=lines.append)
    assert "epoch 0: backbone groups trainable 0/4 (from the top)" in lines
    after0 = load_checkpoint(tmp_path / "frz" / "checkpoints" / "last.pt")["model"]
    seed_everything(0)  # the trainer seeds with train.seed=0 before building: same init
    init = build_detector(DetectorModelConfig(backbone="tiny-cnn")).state_dict()
    for k in (k for k in after0 if k.startswith("backbone.")):
        assert torch.equal(init[k], after0[k]), k
    assert after0["backbone.body.1.running_var"].eq(1).all()  # BN never saw a batch
    train_detector(cfg(2, freeze), log=lines.append)  # resumes: epoch 1
    assert "epoch 1: backbone groups trainable 1/4 (from the top)" in lines
    after1 = load_checkpoint(tmp_path / "frz" / "checkpoints" / "last.pt")["model"]
    moved = {k for k in after0 if not torch.equal(after0[k], after1[k])}
    # tiny-cnn body: 0 conv, 1 bn, ..., 9 conv, 10 bn (the top group)
    assert {k for k in moved if k.startswith("backbone.")} == {
        "backbone.body.9.weight", "backbone.body.10.weight", "backbone.body.10.bias",
        "backbone.body.10.running_mean", "backbone.body.10.running_var",
        "backbone.body.10.num_batches_tracked"}
    assert any(k.startswith("head.") for k in moved)
