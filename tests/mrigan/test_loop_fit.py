"""mrigan.loop.fit with a training task added the way README's "Add a training task" says: one
class (batches, train_step, validate, state_dict, set_lr), trained through fit() on real
pixels (a per-pixel logistic regression telling FaceForensics++'s manipulated region from the
rest by |fake - original|). Exact resume, best by a lower-is-better metric, the time budget,
the non-finite stop, the meanings of ``resume``; the loop's schedules against torch's."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from mrigan.checkpoint import CheckpointError, load_checkpoint
from mrigan.fileio import read_image
from mrigan.loop import Cadence, NonFiniteLossError, Task, TrainingRun, fit, higher_is_better
from mrigan.lr_schedules import CosineLr, PlateauLr


@dataclass(frozen=True)
class MaskConfig:
    """The task's typed config (written to the run's config.yaml and every checkpoint)."""

    epochs: int = 3
    lr: float = 2.0
    batch: int = 2048


class MaskPixels(Task):
    """The README's example task: logistic regression |fake - original| (RGB) -> in the mask."""

    select_by = "val_loss"  # lower is better: mrigan.loop.higher_is_better knows it by name

    def __init__(self, cfg: MaskConfig, x: torch.Tensor, y: torch.Tensor) -> None:
        torch.manual_seed(0)
        self.model = torch.nn.Linear(3, 1)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=cfg.lr, momentum=0.9)
        self.schedule = CosineLr(cfg.lr, total=cfg.epochs, per="epoch")
        train = torch.arange(len(y)) % 4 != 0  # every 4th pixel validates
        self.x, self.y, self.xv, self.yv = x[train], y[train], x[~train], y[~train]
        self.epochs, self.batch = cfg.epochs, cfg.batch

    def batches(self, epoch, batch_in_epoch):
        for e in range(epoch, self.epochs):
            order = torch.randperm(len(self.y), generator=torch.Generator().manual_seed(e))
            chunks = order.split(self.batch)
            for i in range(batch_in_epoch if e == epoch else 0, len(chunks)):
                yield ((e, i + 1) if i + 1 < len(chunks) else (e + 1, 0)), chunks[i]

    def train_step(self, batch, step):
        loss = F.binary_cross_entropy_with_logits(self.model(self.x[batch])[:, 0], self.y[batch])
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return {"loss": loss.detach()}

    def validate(self, state):
        with torch.no_grad():
            logits = self.model(self.xv)[:, 0]
        return {"val_loss": float(F.binary_cross_entropy_with_logits(logits, self.yv)),
                "val_auc": float(roc_auc_score(self.yv.numpy(), logits.numpy()))}

    def set_lr(self, lr):
        for group in self.opt.param_groups:
            group["lr"] = lr

    def state_dict(self):
        return {"model": self.model.state_dict(), "optimizer": self.opt.state_dict()}

    def load_state_dict(self, state):
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])


@pytest.fixture(scope="module")
def pixels(ff_examples):
    fake = read_image(ff_examples / "ex_deepfakes.png")[::4, ::4].astype(np.float32) / 255
    real = read_image(ff_examples / "ex_original.png")[::4, ::4].astype(np.float32) / 255
    mask = read_image(ff_examples / "ex_deepfakes_mask.png")[::4, ::4].max(axis=2) > 127
    x = torch.from_numpy(np.abs(fake - real).reshape(-1, 3)) * 10
    y = torch.from_numpy(mask.reshape(-1).astype(np.float32))
    assert 0.02 < float(y.mean()) < 0.5  # a real mask: some pixels manipulated, most not
    return x, y


def _run(pixels, tmp_path, name, epochs=3, resume=True, **cadence):
    cfg = MaskConfig(epochs=epochs)
    task = MaskPixels(cfg, *pixels)
    run = TrainingRun(tmp_path / name, cfg, fmt="mask/1", tensorboard=False,
                      max_minutes=cadence.get("max_minutes", 0.0))
    cadence = Cadence(epochs=epochs, eval_every_epochs=1, checkpoint_every=7, **cadence)
    return task, fit(task, run, cadence, resume=resume)


def _weights(path):
    return load_checkpoint(path)["model"]


def test_a_task_added_in_one_class_learns_and_keeps_the_best_by_a_lower_is_better_metric(
        pixels, tmp_path):
    task, result = _run(pixels, tmp_path, "straight", epochs=4)
    losses = [row["val_loss"] for row in result.history]
    assert [row["epoch"] for row in result.history] == [0, 1, 2, 3]
    assert result.history[-1]["val_auc"] > 0.8  # it learned where the face was manipulated
    assert losses[-1] < losses[0]
    best = int(np.argmin(losses))
    assert (result.select_by, result.best_value, result.best_epoch) == (
        "val_loss", losses[best], best)
    assert load_checkpoint(result.best_checkpoint)["best"]["epoch"] == best
    # the lr followed the loop's cosine schedule, one value per epoch
    assert task.opt.param_groups[0]["lr"] == pytest.approx(CosineLr(2.0, 4, "epoch").lr(0, 3))


def test_stopped_mid_epoch_and_resumed_equals_an_uninterrupted_run(pixels, tmp_path):
    _, straight = _run(pixels, tmp_path, "straight")
    per_epoch = math.ceil(len(MaskPixels(MaskConfig(), *pixels).y) / MaskConfig.batch)
    assert per_epoch == 8
    _, stopped = _run(pixels, tmp_path, "split", max_steps=10)  # mid-epoch 1
    assert (stopped.stopped, stopped.step, stopped.epoch) == ("max_steps", 10, 1)
    _, resumed = _run(pixels, tmp_path, "split")  # resume=True: continues from last.pt
    assert resumed.step == straight.step
    a, b = _weights(straight.last_checkpoint), _weights(resumed.last_checkpoint)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # the stop validated once more (mid-epoch); the rows of whole epochs are the same
    whole = [r for r in resumed.history if r["step"] % per_epoch == 0]
    assert whole == straight.history
    assert resumed.best_value == straight.best_value
    # a finished run resumed trains nothing more
    _, again = _run(pixels, tmp_path, "split")
    assert again.history == resumed.history and again.step == resumed.step


def test_time_budget_stops_with_last_pt_and_resume_finishes_exactly(pixels, tmp_path):
    _, straight = _run(pixels, tmp_path, "straight")
    _, stopped = _run(pixels, tmp_path, "budget", max_minutes=1e-9)
    assert (stopped.stopped, stopped.step, stopped.history) == ("time", 1, [])  # no extra row
    assert load_checkpoint(stopped.last_checkpoint)["step"] == 1
    _, resumed = _run(pixels, tmp_path, "budget")
    assert resumed.history == straight.history
    a, b = _weights(straight.last_checkpoint), _weights(resumed.last_checkpoint)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_non_finite_loss_stops_every_task_the_same_way(pixels, tmp_path):
    task = MaskPixels(MaskConfig(epochs=2), *pixels)
    run = TrainingRun(tmp_path / "nan", MaskConfig(epochs=2), fmt="mask/1", tensorboard=False)

    def poison(task, step, losses):
        if step == 8:
            with torch.no_grad():
                task.model.weight.fill_(math.nan)

    with pytest.raises(NonFiniteLossError, match=r"step 9 .*non-finite.*last\.pt"):
        fit(task, run, Cadence(epochs=2, checkpoint_every=4), callbacks=[poison])
    assert load_checkpoint(run.last_path)["step"] == 8  # the last good state


def test_resume_means_one_thing(pixels, tmp_path):
    _, first = _run(pixels, tmp_path, "r", epochs=1)
    _, fresh = _run(pixels, tmp_path, "r", epochs=1, resume=False)  # starts anew
    assert fresh.history == first.history and fresh.step == first.step
    first.last_checkpoint.unlink()  # best.pt alone: damage, not a fresh start
    with pytest.raises(CheckpointError, match="best.pt exists"):
        _run(pixels, tmp_path, "r", epochs=1)
    _, other = _run(pixels, tmp_path, "other", epochs=2, resume=first.best_checkpoint)
    assert [r["step"] for r in other.history] == [8, 16]  # one epoch more
    assert other.history[0] == fresh.history[0]


def test_metric_directions_by_name():
    assert not any(map(higher_is_better, ("loss", "val_loss", "rmse", "val_rmse", "mae", "eer",
                                          "l2", "test.eer")))
    assert all(map(higher_is_better, ("auc", "val_auc", "mean_ssim", "select", "srcc", "plcc",
                                      "score", "accuracy")))


def test_cosine_per_epoch_is_torchs_cosine_annealing_lr():
    for t in (1, 3, 30):
        opt = torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=2e-3)
        ref = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=t)
        ours = CosineLr(2e-3, t, per="epoch")
        for epoch in range(t + 2):
            assert ours.lr(0, epoch) == opt.param_groups[0]["lr"], (t, epoch)  # bit-exact
            opt.step()
            ref.step()


@pytest.mark.parametrize("higher", [False, True])
def test_plateau_is_torchs_reduce_lr_on_plateau_and_reads_its_state(higher):
    values = [1.0, 0.9, 0.9, 0.95, 0.8, 0.8, 0.8, 0.7, math.nan, 0.7, 0.6]
    values = [-v for v in values] if higher else values
    opt = torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=1.0)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max" if higher else "min",
                                                     factor=0.5, patience=1)
    ours = PlateauLr(1.0, factor=0.5, patience=1)
    for i, v in enumerate(values):
        ref.step(v)
        ours.observe(v, higher)
        assert ours.lr(0, 0) == opt.param_groups[0]["lr"], i
        again = PlateauLr(1.0, factor=0.5, patience=1)
        again.load_state_dict(ref.state_dict())  # a checkpoint written before fit()
        assert again.lr(0, 0) == ours.lr(0, 0) and again.num_bad_epochs == ours.num_bad_epochs
