"""Precise BN (``train.bn_recalibrate``), AdamW and the cosine schedule of the detector trainer.

Why (measured on ``mrigan benchmark --preset cpu``): a tiny-cnn checkpoint chosen after 16
steps kept ~0.9^16 of BatchNorm's starting running variance, so in eval mode every face got the
same score. The tests check the recalibrated statistics against a direct computation, that the
optimisation path is unchanged by it, that it removes the eval-mode collapse after a few steps,
and the optimiser / schedule options against their formulas.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from _detector_setup import tiny_detector_config, write_detector_mri_df

from detectors.augment import build_augmenter
from detectors.config import (
    DetectorModelConfig,
    DetectorTrainConfig,
)
from detectors.data import load_face, load_rows, to_tensor
from detectors.inputs import build_input
from detectors.model import build_detector
from detectors.precise_bn import recalibrate_batchnorm, trainable_norms
from detectors.predict import predict_probs
from detectors.samplers import epoch_batches
from detectors.train import lr_at, make_dataset, make_optimizer, split_rows, train_detector
from mrigan.app.benchmark.config import BenchmarkConfig
from mrigan.app.benchmark.models import detector_config
from mrigan.checkpoint import load_checkpoint
from mrigan.config import ConfigError, load_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")
QUIET = {"log": lambda *a, **k: None}


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    return write_detector_mri_df(tmp_path_factory.mktemp("syn"))


def _cfg(root, out, name, **train):
    return tiny_detector_config(root, out, name, **{"epochs": 2, **train})


def _faces(root, n=12, size=32) -> torch.Tensor:
    rows = load_rows(root)[:n]
    return torch.stack([to_tensor(load_face(root / r["image"], size)) for r in rows])


def test_recalibrated_statistics_are_the_average_batch_statistics(synthetic_root):
    torch.manual_seed(0)
    model = build_detector(DetectorModelConfig(backbone="tiny-cnn"))
    x = _faces(synthetic_root)
    batches = [x[:6], x[6:]]
    conv, bn = model.backbone.body[0], model.backbone.body[1]
    with torch.no_grad():
        outs = [conv(b) for b in batches]
    want_mean = torch.stack([o.mean((0, 2, 3)) for o in outs]).mean(0)
    want_var = torch.stack([o.var((0, 2, 3), unbiased=True) for o in outs]).mean(0)
    model.train()
    rng = torch.get_rng_state()
    used = recalibrate_batchnorm(model, trainable_norms(model), batches, lambda m, b: m(b))
    assert used == 2
    torch.testing.assert_close(bn.running_mean, want_mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bn.running_var, want_var, rtol=1e-5, atol=1e-6)
    assert bn.momentum == 0.1 and not model.training  # momentum restored, left in eval mode
    assert torch.equal(torch.get_rng_state(), rng)  # the head's dropout never drew
    # recalibrated on one batch, eval mode on that batch is train mode (batch statistics) up
    # to the running variance being the unbiased one: 12 faces x 16 x 16 values per channel in
    # the first block, a factor 3072/3071
    recalibrate_batchnorm(model, trainable_norms(_train_mode(model)), [x], lambda m, b: m(b))
    first_block = model.backbone.body[:3]
    with torch.no_grad():
        evaluated = first_block(x)
        model.train()
        batch_stats = first_block(x)
    torch.testing.assert_close(evaluated, batch_stats, rtol=1e-3, atol=1e-3)
    assert (evaluated - batch_stats).abs().max() < 0.01 * batch_stats.std()


def _train_mode(model):
    model.train()
    return model


def test_frozen_batchnorm_and_empty_batches_are_left_alone(synthetic_root):
    torch.manual_seed(0)
    model = build_detector(DetectorModelConfig(backbone="tiny-cnn")).train()
    frozen = model.backbone.body[1]
    frozen.eval()  # what detectors.freezing does to the BatchNorm of frozen groups
    before = {k: v.clone() for k, v in model.state_dict().items()}
    norms = trainable_norms(model)
    assert frozen not in norms and len(norms) == 3
    assert recalibrate_batchnorm(model, norms, [], lambda m, b: m(b)) == 0
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    recalibrate_batchnorm(model, norms, [_faces(synthetic_root)], lambda m, b: m(b))
    assert torch.equal(frozen.running_var, before["backbone.body.1.running_var"])
    assert not torch.equal(model.backbone.body[4].running_var,
                           before["backbone.body.4.running_var"])


def test_trainer_recalibration_changes_only_the_running_statistics(synthetic_root, tmp_path):
    """Same weights with and without it (dropout and batches untouched); the saved statistics
    are the average over the last epoch's first two batches; eval-mode scores of the training
    faces no longer collapse after a few steps."""
    off = train_detector(_cfg(synthetic_root, tmp_path, "off", max_steps=4), **QUIET)
    on_cfg = _cfg(synthetic_root, tmp_path, "on", max_steps=4, bn_recalibrate=2)
    on = train_detector(on_cfg, **QUIET)
    a, b = load_checkpoint(off.last_checkpoint), load_checkpoint(on.last_checkpoint)
    assert a["step"] == b["step"] == 4
    stats = ("running_mean", "running_var", "num_batches_tracked")
    for key in a["model"]:
        if not key.endswith(stats):
            torch.testing.assert_close(a["model"][key], b["model"][key], rtol=0, atol=0, msg=key)
    assert not torch.equal(a["model"]["backbone.body.1.running_var"],
                           b["model"]["backbone.body.1.running_var"])

    # reference: conv1 of the final weights over the stop epoch's first two training batches
    tc = on_cfg.train
    train_rows, val_rows = split_rows(on_cfg)
    adapter = build_input(on_cfg.input, on_cfg.data.root, device="cpu", rows=train_rows)
    ds = make_dataset(train_rows, adapter, on_cfg,
                      build_augmenter(tc.augment, 32, params=tc.augment_params))
    epoch = b["history"][-1]["epoch"]  # the epoch whose end (or stop) was validated
    ds.augment_key = (tc.seed, epoch)
    batches = epoch_batches(ds.labels, ds.pair_keys, balance=tc.balance,
                            batch_size=tc.batch_size, epoch=epoch, seed=tc.seed)[:2]
    model = build_detector(on_cfg.model)
    model.load_state_dict(b["model"])
    with torch.no_grad():
        outs = [model.backbone.body[0](torch.stack([ds[i]["image"] for i in batch]))
                for batch in batches]
    torch.testing.assert_close(b["model"]["backbone.body.1.running_mean"],
                               torch.stack([o.mean((0, 2, 3)) for o in outs]).mean(0),
                               rtol=1e-5, atol=1e-6)

    # the collapse it removes: after 4 steps the running averages still hold 0.9^4 of their
    # starting values, and eval mode squeezes the training faces' scores together
    plain = make_dataset(train_rows, adapter, on_cfg)
    spread = {}
    for name, state in (("off", a), ("on", b)):
        net = build_detector(on_cfg.model)
        net.load_state_dict(state["model"])
        spread[name] = predict_probs(net, adapter, plain, batch_size=16).std()
    assert spread["on"] > 5 * spread["off"], spread


def test_cosine_learning_rate_follows_its_formula():
    tc = DetectorTrainConfig(lr=2e-3, scheduler="cosine", epochs=4)
    assert lr_at(tc, 0, 40) == pytest.approx(2e-3)
    assert lr_at(tc, 20, 40) == pytest.approx(1e-3)
    assert lr_at(tc, 30, 40) == pytest.approx(1e-3 * (1 + math.cos(0.75 * math.pi)))
    assert lr_at(tc, 40, 40) == pytest.approx(0.0, abs=1e-15)
    assert lr_at(DetectorTrainConfig(lr=2e-3), 30, 40) == 2e-3  # none: constant


def test_cosine_adamw_run_resumes_mid_epoch_to_the_same_weights(synthetic_root, tmp_path):
    opts = dict(optimizer="adamw", weight_decay=0.05, scheduler="cosine", epochs=3)
    straight = train_detector(_cfg(synthetic_root, tmp_path, "straight", **opts), **QUIET)
    train_detector(_cfg(synthetic_root, tmp_path, "resumed", max_steps=3, **opts), **QUIET)
    resumed = train_detector(_cfg(synthetic_root, tmp_path, "resumed", **opts), **QUIET)
    assert straight.step == resumed.step
    a, b = load_checkpoint(straight.last_checkpoint), load_checkpoint(resumed.last_checkpoint)
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=0, atol=0, msg=key)
    # the last step ran at the cosine's last value
    total = straight.step
    tc = _cfg(synthetic_root, tmp_path, "x", **opts).train
    assert a["optimizer"]["param_groups"][0]["lr"] == pytest.approx(lr_at(tc, total - 1, total))
    assert 0 < a["optimizer"]["param_groups"][0]["lr"] < 0.1 * tc.lr


@pytest.mark.parametrize(("name", "expected"), [("adam", 0.9), ("adamw", 0.95)])
def test_adamw_decays_weights_decoupled_from_the_gradient(name, expected):
    """A weight of 1 with zero gradient, lr 0.1, weight decay 0.5, one step. Adam adds the
    decay to the gradient (0.5), and its normalised step is a full lr: 1 - 0.1 = 0.9. AdamW
    shrinks the weight directly: 1 - 0.1 * 0.5 = 0.95, and the zero gradient moves nothing."""
    layer = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    opt = make_optimizer(layer, DetectorTrainConfig(optimizer=name, lr=0.1, weight_decay=0.5))
    layer.weight.grad = torch.zeros_like(layer.weight)
    opt.step()
    assert float(layer.weight.detach()) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(("key", "value", "match"), [
    ("optimizer", "sgd", "DetectorTrainConfig.optimizer: 'sgd' is not one of"),
    ("scheduler", "step", "DetectorTrainConfig.scheduler: 'step' is not one of"),
    ("bn_recalibrate", -1, "DetectorTrainConfig.bn_recalibrate: -1 is below the minimum 0"),
])
def test_bad_optimizer_schedule_or_recalibration_is_a_config_error(key, value, match):
    with pytest.raises(ConfigError, match=match):
        DetectorTrainConfig(**{key: value})


def test_cpu_benchmark_preset_detectors_use_the_fix():
    """Both detectors of ``--preset cpu`` get precise BN and the AdamW + cosine recipe."""
    cfg = load_config(BenchmarkConfig, "configs/benchmark_cpu.yaml")
    for kind in ("plain", "mri"):
        tc = detector_config(cfg, kind, "data", Path("out"), "g.safetensors").train
        assert (tc.bn_recalibrate, tc.optimizer, tc.scheduler) == (8, "adamw", "cosine")
