"""Realism training on the loop skeleton: exact resume, the ensemble paper's recipe
(ReduceLROnPlateau, early stopping, 2 x 8 gradient accumulation, retraining on train + val)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from datasets_builders.synthetic import demo_faces
from detectors.realism.config import RealismConfig, RealismDataConfig, RealismTrainConfig
from detectors.realism.graded import graded_clips
from detectors.realism.model import RealismModelConfig, RealismRegressor
from detectors.realism.sampler import SequenceSampler
from detectors.realism.train import RegressorTrainer, load_regressor, train_regressor
from mrigan.checkpoint import load_checkpoint
from mrigan.config import load_config

SIZE = 32
QUIET = {"log": lambda _: None}


@pytest.fixture(scope="module")
def clips():
    """Graded self-blends of the astronaut's face variants, two pseudo-identities per split."""
    faces = demo_faces(SIZE)
    train = graded_clips({"a": faces[:5], "b": faces[5:10]}, (0.0, 0.25, 0.5, 0.75, 1.0),
                         clips_per_level=2, frames_per_clip=4, seed=0)
    val = graded_clips({"c": faces[10:]}, (0.0, 0.5, 1.0), clips_per_level=2,
                       frames_per_clip=4, seed=1)
    return train, val


def _cfg(**train) -> RealismConfig:
    return RealismConfig(
        data=RealismDataConfig(image_size=SIZE),
        sampler=SequenceSampler(num_frames=3, stride=1, test_draws=2),
        model=RealismModelConfig(backbone="tiny-cnn", inputs="plain", hidden=16, dropout=0.2),
        train=RealismTrainConfig(**{"epochs": 4, "batch_size": 4, "lr": 2e-3, "loss": "rmse",
                             "device": "cpu", "precision": "fp32", "seed": 0, "val_draws": 1,
                             "select_by": "rmse", "tensorboard": False, **train}))


class Killed(Exception):
    pass


def test_killed_and_resumed_run_ends_bit_exact(clips, tmp_path, one_torch_thread):
    train, val = clips
    cfg = _cfg(epochs=4, scheduler="plateau", plateau_patience=0, accumulation=2,
               tensorboard=True)
    full = train_regressor(cfg, train, val, tmp_path / "full", **QUIET)

    def kill_after_epoch_1(line):
        if line.startswith("epoch   1"):
            raise Killed  # after epoch 1's log line, before its checkpoint: epoch 0 is last.pt

    with pytest.raises(Killed):
        train_regressor(cfg, train, val, tmp_path / "split", log=kill_after_epoch_1)
    assert load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")["epoch"] == 0
    resumed_cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, resume=True))
    resumed = train_regressor(resumed_cfg, train, val, tmp_path / "split", **QUIET)
    assert resumed.history == full.history
    assert resumed.best_epoch == full.best_epoch
    for name in ("last.pt", "best.pt"):
        a = load_checkpoint(tmp_path / "full" / "checkpoints" / name)
        b = load_checkpoint(tmp_path / "split" / "checkpoints" / name)
        assert a["epoch"] == b["epoch"] and a["val"] == b["val"]
        for k, v in a["model"].items():
            assert torch.equal(v, b["model"][k]), (name, k)
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    # a finished run resumed does nothing more
    again = train_regressor(resumed_cfg, train, val, tmp_path / "split", **QUIET)
    assert again.history == full.history
    model, saved_cfg = load_regressor(tmp_path / "split" / "checkpoints" / "best.pt")
    assert saved_cfg.train.scheduler == "plateau"


def test_plateau_scheduler_reduces_lr_after_a_plateau(clips, one_torch_thread):
    train, val = clips
    run = train_regressor(_cfg(epochs=6, scheduler="plateau", plateau_patience=0,
                               plateau_factor=0.5), train, val, **QUIET)
    # the reference: torch's ReduceLROnPlateau fed the same validation RMSEs
    opt = torch.optim.AdamW(torch.nn.Linear(1, 1).parameters(), lr=2e-3)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.5, patience=0)
    expected = []
    for r in run.history:
        ref.step(r["val_rmse"])
        expected.append(opt.param_groups[0]["lr"])
    # row["lr"] is the lr an epoch trained with: the one set after the previous validation
    assert [r["lr"] for r in run.history] == pytest.approx([2e-3, *expected[:-1]])
    assert min(expected) < 2e-3, run.history  # a plateau happened and the lr fell


def test_early_stopping_stops(clips, tmp_path, one_torch_thread):
    train, val = clips
    result = train_regressor(_cfg(epochs=30, lr=0.0, weight_decay=0.0, early_stopping=2,
                                  scheduler="none"), train, val, tmp_path / "es", **QUIET)
    assert result.stopped == "early_stopping"
    rmses = [r["val_rmse"] for r in result.history]
    best = min(range(len(rmses)), key=rmses.__getitem__)
    assert len(rmses) == best + 3 < 30  # the best epoch, then 2 epochs without a better one
    assert result.best_epoch == best


def test_accumulation_2x8_is_one_batch_of_16(clips, one_torch_thread):
    """The trainer's accumulated gradient equals autograd's on the batch of 16 at once (mean
    loss, eval-mode BatchNorm so batch statistics do not differ)."""
    train, _ = clips
    cfg = _cfg(batch_size=2, accumulation=8, loss="mae", grad_clip=0.0, lr=1e-3)
    torch.manual_seed(0)
    model = RealismRegressor(cfg.model, mos_centre=3.0).eval()
    frames = torch.rand(16, 3, 3, SIZE, SIZE)
    mos = torch.linspace(1.0, 5.0, 16)
    reference = RealismRegressor(cfg.model, mos_centre=3.0).eval()
    reference.load_state_dict(model.state_dict())
    (reference({"plain": frames}) - mos).abs().mean().backward()

    trainer = RegressorTrainer(cfg, model, torch.device("cpu"))
    trainer.opt.zero_grad(set_to_none=True)
    for i in range(0, 16, 2):
        trainer.backward({"plain": frames[i:i + 2], "mos": mos[i:i + 2]}, scale=1 / 8)
    for (name, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
        if q.grad is None:
            assert p.grad is None or not p.grad.any(), name
        else:
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-7, msg=name)
    # train_epoch makes one optimizer step per 8 micro-batches: 10 micro-batches of 2 -> a
    # step after 8 and a last one for the remaining 2
    trainer = RegressorTrainer(cfg, model, torch.device("cpu"))
    micro = [{"plain": frames[i % 16:i % 16 + 2], "mos": mos[i % 16:i % 16 + 2]}
             for i in range(0, 20, 2)]
    trainer.train_epoch(micro)
    assert {int(s["step"]) for s in trainer.opt.state.values()} == {2}


def test_retraining_on_train_and_val(clips, tmp_path, one_torch_thread):
    train, val = clips
    result = train_regressor(_cfg(epochs=3, retrain_on_train_val=True), train, val,
                             tmp_path / "rt", **QUIET)
    retrain = [r for r in result.history if r.get("phase") == "retrain"]
    assert len(retrain) == result.best_epoch + 1 and "val_rmse" not in retrain[0]
    assert result.extras["retrained_path"] == tmp_path / "rt" / "retrain" / "checkpoints" / "best.pt"
    saved = load_checkpoint(result.extras["retrained_path"])
    for k, v in result.model.state_dict().items():
        assert torch.equal(v, saved["model"][k]), k


def test_ensemble_paper_preset_loads_with_the_recipe():
    cfg = load_config(RealismConfig, "configs/realism_ensemble_paper.yaml")
    t = cfg.train
    assert (t.lr, t.batch_size, t.accumulation, t.scheduler, t.loss) == (2e-5, 2, 8, "plateau",
                                                                          "rmse")
    assert t.early_stopping > 0 and t.retrain_on_train_val and t.epochs == 33
    assert (cfg.model.dropout, cfg.sampler.num_frames) == (0.1, 5)


def test_auto_precision_is_recorded_and_a_bf16_trained_regressor_is_not_constant(
        clips, tmp_path, bf16_capability, one_torch_thread):
    """Issue 20: training ``auto`` is bf16 on a CPU with native bf16 and fp32 elsewhere; the
    run records it, and a regressor trained and scored in bf16 still ranks the clips (its head
    runs in fp32: a bf16 head gave one constant MOS and a NaN SRCC)."""
    import math

    from detectors.realism import metrics
    from detectors.realism.predict import predict_clips

    train, val = clips
    cfg = _cfg(epochs=2, precision="auto")
    result = train_regressor(cfg, train, val, tmp_path / "auto", **QUIET)
    expected = "bf16" if bf16_capability else "fp32"
    assert load_checkpoint(tmp_path / "auto" / "checkpoints" / "last.pt")["precision"] == expected
    assert all(math.isfinite(row["val_srcc"]) for row in result.history)
    pred = predict_clips(result.model, val, cfg.sampler, inputs="plain", size=SIZE,
                         precision=expected)
    assert len(set(pred.tolist())) == len(val)
    assert math.isfinite(metrics.mos_report([c.mos for c in val], pred)["srcc"])
