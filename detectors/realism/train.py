"""Fine-tune a realism model (``model.name``: the backbone + pooling regressor, or DA-CLIP) on
rated clips. The model, its trainer plugin and its checkpoint loader come from
:data:`detectors.realism.model_registry.REALISM_MODELS`; the loop below is the same for every model.

One epoch draws one random sequence per training clip; validation predicts each validation
clip from ``train.val_draws`` sequences and keeps the epoch with the best ``train.select_by``
(``best.pt``); ``last.pt`` is written every epoch. Checkpoints are plain dicts (config as a
dict, state dict, epoch, validation report, optimizer/scheduler/RNG state for resume) readable
with ``torch.load(weights_only=True)``.

The model is a :class:`RealismTask` of :func:`mrigan.loop.fit`, which owns the run folder,
checkpoints, exact resume (``train.resume``, true by default as for every trainer: a killed run
continues from the last finished epoch and ends with the same weights and metrics as an
uninterrupted one), best tracking, TensorBoard, the non-finite stop, the learning-rate schedule
and the time budget (checked after each epoch).

Recipe switches (``configs/realism_ensemble_paper.yaml`` reproduces the ensemble paper's:
AdamW 2e-5, ReduceLROnPlateau, early stopping, batch 2 x 8 accumulation, retraining on train+val):

* ``train.scheduler``: ``cosine`` (today's default), ``plateau`` (``ReduceLROnPlateau`` on the
  validation ``select_by``; on the training loss without validation clips) or ``none``.
* ``train.early_stopping``: stop after that many epochs without a better ``select_by``.
* ``train.accumulation``: micro-batches per optimizer step. Each micro-batch's loss is divided
  by the number of micro-batches in its group, so for a per-sample mean loss (mae) the step equals
  one batch of ``batch_size * accumulation``; for RMSE or norm-in-norm it is the mean of the
  micro-batch losses (what PyTorch Lightning, the paper's framework, does). BatchNorm statistics
  are per micro-batch. A last incomplete group at the end of an epoch still makes a step.
* ``train.retrain_on_train_val``: after model selection, the best weights train further on
  train + validation clips for ``train.retrain_epochs`` (default: best epoch + 1) in
  ``<out>/retrain/``, and that model is returned. Departure from the paper, which trained this
  last phase "until early stopping": with the validation clips inside the training data nothing
  held out is left to monitor, so the length is fixed by the selection run instead.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from detectors.backbones import weights_record
from detectors.realism import metrics
from detectors.realism.clips import Clip
from detectors.realism.config import RealismConfig
from detectors.realism.data import RealismDataError
from detectors.realism.dataset import ClipDataset
from detectors.realism.model_registry import model_kind
from detectors.realism.predict import predict_clips
from detectors.realism.trainer import RegressorTrainer, lr_schedule
from mrigan.checkpoint import CheckpointError, load_checkpoint, seed_everything
from mrigan.config import from_dict
from mrigan.device import resolve_device, use_channels_last
from mrigan.loop import (
    Cadence,
    LoopState,
    Task,
    TrainingRun,
    TrainResult,
    check_same_architecture,
    fit,
)

__all__ = ["RegressorTrainer", "TrainResult", "load_regressor", "train_regressor"]

CHECKPOINT_KIND = "mrigan-realism-regressor"


def load_regressor(path: str | os.PathLike, device: str | torch.device = "cpu"
                   ) -> tuple[torch.nn.Module, RealismConfig]:
    """A trained realism model (any ``model.name``) and the config it was trained with, from
    ``best.pt``/``last.pt``. Local weights files are not needed again (they are inside)."""
    state = load_checkpoint(path, map_location="cpu")
    if state.get("kind") != CHECKPOINT_KIND:
        raise CheckpointError(f"{path}: not a realism regressor checkpoint (kind={state.get('kind')!r})")
    cfg = from_dict(RealismConfig, state["config"], where=str(path))
    model = model_kind(cfg.model.name).load(cfg.model, state)
    return model.to(resolve_device(device)).eval(), cfg


def train_regressor(cfg: RealismConfig, train_clips: Sequence[Clip], val_clips: Sequence[Clip] = (),
                    out_dir: str | os.PathLike | None = None,
                    log: Callable[[str], None] = print) -> TrainResult:
    """Train on ``train_clips``; choose the epoch by validation when ``val_clips`` is given."""
    result = _fit(cfg, train_clips, val_clips, out_dir, log)
    tc = cfg.train
    if tc.retrain_on_train_val and val_clips:
        epochs = tc.retrain_epochs or result.best_epoch + 1
        log(f"retraining the best model (epoch {result.best_epoch}) on train + val for "
            f"{epochs} epochs")
        again = dataclasses.replace(cfg, train=dataclasses.replace(
            tc, epochs=epochs, retrain_on_train_val=False, early_stopping=0))
        retrain_dir = Path(out_dir, "retrain") if out_dir else None
        retrained = _fit(again, [*train_clips, *val_clips], (), retrain_dir, log,
                         init=result.model.state_dict(), mos_centre=result.extras["mos_centre"])
        result.model = retrained.model
        result.extras["retrained_path"] = retrained.best_checkpoint
        result.history += [{**row, "phase": "retrain"} for row in retrained.history]
    return result


class RealismTask(Task):
    """A realism model as a :class:`mrigan.loop.Task`: epochs of random clip sequences,
    (accumulated) steps of its trainer plugin, validation on the validation clips' MOS, its
    checkpoint keys (``next_epoch``, ``best``...); the best weights are kept in memory and are
    the model's at the end."""

    def __init__(self, cfg: RealismConfig, trainer: RegressorTrainer, dataset: ClipDataset,
                 loader: DataLoader, val_clips: Sequence[Clip], run: TrainingRun,
                 log: Callable[[str], None], mos_centre: float, weights_source: dict) -> None:
        tc = cfg.train
        self.cfg, self.trainer, self.model, self.run = cfg, trainer, trainer.model, run
        self.dataset, self.loader, self.val_clips, self.log = dataset, loader, val_clips, log
        self.mos_centre, self.weights_source = mos_centre, weights_source
        self.select_by, self.device, self.seed = tc.select_by, trainer.device, tc.seed
        self.precision_setting, self.nonfinite_hint = tc.precision, "Lower train.lr."
        self.schedule = lr_schedule(cfg)
        self.losses: list[float] = []
        self.val: dict = {}
        self.best_state: dict | None = None
        self._i = self._n = 0

    def say(self, message: str) -> None:
        self.log(message)

    def batches(self, epoch: int, batch_in_epoch: int):
        n = len(self.loader)
        for e in range(epoch, self.cfg.train.epochs):
            self.dataset.set_epoch(e)
            self.trainer.start_epoch()
            self.losses = []
            batches = iter(self.loader)
            for i in range(n):
                batch = next(batches)
                if i == n - 1:  # run the loader out now, as a for loop over it would: its
                    for _ in batches:  # sampler's last draw from the shuffle generator
                        pass  # belongs to this epoch (and to the state saved after it)
                self._i, self._n = i, n
                yield ((e, i + 1) if i + 1 < n else (e + 1, 0)), batch

    def train_step(self, batch, step: int) -> dict[str, torch.Tensor]:
        loss = self.trainer.train_batch(self._i, self._n, batch)
        self.losses.append(float(loss))
        return {"loss": loss}

    def set_lr(self, lr: float) -> None:
        self.trainer.set_lr(lr)

    def set_precision(self, precision: str | None) -> None:
        self.trainer.set_precision(precision)

    def state_dict(self) -> dict:
        return self.trainer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.trainer.load_state_dict(state)

    def validate(self, state: LoopState) -> dict[str, float]:
        self.val = {}
        if not self.val_clips:
            return {}
        cfg, tc = self.cfg, self.cfg.train
        pred = predict_clips(self.model, self.val_clips, cfg.sampler, inputs=cfg.model.inputs,
                             size=cfg.data.image_size, device=self.device, seed=tc.seed,
                             draws=tc.val_draws, precision=tc.precision)
        self.val = metrics.mos_report([c.mos for c in self.val_clips], pred)
        return {k: v for k, v in self.val.items() if k != "n"}

    # --- checkpoint keys (mrigan-realism-regressor) ----------------------------------------

    def progress(self, state: LoopState) -> dict:
        best = state.best
        return {"epoch": int(state.trained_epoch), "next_epoch": state.epoch, "val": self.val,
                "mos_centre": float(self.mos_centre), "history": state.history,
                "best": {"metric": best.metric if self.val_clips else "epoch",
                         "value": best.value, "step": best.epoch, "loop_step": best.step},
                "weights_source": self.weights_source}

    def read_progress(self, ckpt, state: LoopState) -> None:
        state.epoch = ckpt["next_epoch"]
        state.step = state.epoch * len(self.loader)  # realism checkpoints: at epoch ends
        state.history = list(ckpt["history"])
        best = ckpt["best"]
        state.best.epoch = best["step"]
        state.best.step = best.get("loop_step", best["step"])
        state.best.value = best["value"] if self.val_clips else None
        self.val = dict(ckpt.get("val") or {})
        if state.best.step >= 0 and self.run.best_path is not None:
            self.best_state = self.run.load(self.run.best_path, map_location=self.device)["model"]

    def check_resume(self, path: Path, ckpt) -> None:
        check_same_architecture(path, ckpt["model"], self.model.state_dict())

    def purge_step(self, state: LoopState) -> int:
        return state.epoch  # TensorBoard's x is the epoch

    # --- logs ------------------------------------------------------------------------------

    def history_row(self, state: LoopState, metrics) -> dict:
        return {"epoch": state.trained_epoch, "loss": float(np.mean(self.losses)),
                "lr": self.trainer.lr, **self.trainer.epoch_metrics(),
                **{f"val_{k}": v for k, v in metrics.items()}}

    def report(self, state: LoopState, row, improved: bool) -> None:
        self.log("epoch {epoch:3d}  loss {loss:.4f}".format(**row) + (
            "  val plcc {val_plcc:.3f} srcc {val_srcc:.3f} rmse {val_rmse:.3f}".format(**row)
            if self.val else ""))
        self.run.scalars({k.replace("val_", "val/"): v for k, v in row.items() if k != "epoch"},
                         row["epoch"])
        if improved:
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def finish(self, state: LoopState) -> None:
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        self.model.eval()


def _fit(cfg: RealismConfig, train_clips: Sequence[Clip], val_clips: Sequence[Clip],
         out_dir: str | os.PathLike | None, log: Callable[[str], None],
         init: dict | None = None, mos_centre: float | None = None) -> TrainResult:
    tc = cfg.train
    if len(train_clips) < 2:
        raise RealismDataError(f"need at least 2 training clips, got {len(train_clips)}")
    if tc.threads:
        torch.set_num_threads(tc.threads)
    seed_everything(tc.seed)
    device = resolve_device(tc.device)
    if mos_centre is None:
        mos_centre = float(np.mean([c.mos for c in train_clips]))
    kind = model_kind(cfg.model.name)
    model = kind.build(cfg.model, mos_centre).to(device)
    if init is not None:
        model.load_state_dict(init)
    if use_channels_last(device):
        model = model.to(memory_format=torch.channels_last)
        model.channels_last = True
    trainer = kind.trainer(cfg, model, device, train_clips)
    weights_source = weights_record(cfg.model.backbone, cfg.model.weights)
    dataset = ClipDataset(train_clips, cfg.sampler, cfg.model.inputs, cfg.data.image_size, seed=tc.seed)
    run = TrainingRun(out_dir, cfg, fmt=CHECKPOINT_KIND, format_key="kind",
                      max_minutes=tc.max_minutes, tensorboard=tc.tensorboard,
                      precision=trainer.precision)
    loader = DataLoader(dataset, batch_size=min(tc.batch_size, len(dataset)), shuffle=True,
                        drop_last=len(dataset) > tc.batch_size, num_workers=tc.num_workers,
                        generator=trainer.shuffle, pin_memory=device.type == "cuda",
                        persistent_workers=tc.num_workers > 0)
    task = RealismTask(cfg, trainer, dataset, loader, val_clips, run, log, mos_centre,
                       weights_source)
    cadence = Cadence(epochs=tc.epochs, max_minutes=tc.max_minutes, eval_every_epochs=1,
                      checkpoint_epochs=True, early_stopping=tc.early_stopping if val_clips else 0,
                      mid_epoch_stops=False)
    result = fit(task, run, cadence, resume=tc.resume and out_dir is not None)
    result.model = model
    result.extras["mos_centre"] = mos_centre
    return result
