"""Fine-tune a realism model (``model.name``: the backbone + pooling regressor, or DA-CLIP) on
rated clips. The model, its trainer plugin and its checkpoint loader come from
:data:`detectors.realism.model_registry.REALISM_MODELS`; the loop below is the same for every model.

One epoch draws one random sequence per training clip; validation predicts each validation
clip from ``train.val_draws`` sequences and keeps the epoch with the best ``train.select_by``
(``best.pt``); ``last.pt`` is written every epoch. Checkpoints are plain dicts (config as a
dict, state dict, epoch, validation report, optimizer/scheduler/RNG state for resume) readable
with ``torch.load(weights_only=True)``.

The run folder, checkpoints, exact resume (``train.resume``: a killed run continues from the last
finished epoch and ends with the same weights and metrics as an uninterrupted one), TensorBoard,
the non-finite stop and the time budget come from :mod:`mrigan.loop`.

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
from dataclasses import dataclass, field
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
from detectors.realism.trainer import LOWER_IS_BETTER, RegressorTrainer
from mrigan.checkpoint import CheckpointError, load_checkpoint, seed_everything
from mrigan.config import ConfigError, from_dict
from mrigan.device import resolve_device, use_channels_last
from mrigan.loop import BestTracker, TrainingRun, check_same_architecture

__all__ = ["RegressorTrainer", "TrainResult", "check_train_config", "load_regressor",
           "train_regressor"]

CHECKPOINT_KIND = "mrigan-realism-regressor"
_LOWER_IS_BETTER = LOWER_IS_BETTER
SELECT_BY = ("score", "srcc", "plcc", "rmse", "mae")
SCHEDULERS = ("cosine", "plateau", "none")


@dataclass
class TrainResult:
    model: torch.nn.Module
    history: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_path: Path | None = None
    stopped: str = ""  # "" (all epochs) | early_stopping | time
    retrained_path: Path | None = None  # with train.retrain_on_train_val: its last.pt
    mos_centre: float = 3.0  # mean training MOS: the head's initial bias


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


def check_train_config(cfg: RealismConfig) -> None:
    tc = cfg.train
    if tc.select_by not in SELECT_BY:
        raise ConfigError(f"train.select_by {tc.select_by!r}: use one of {', '.join(SELECT_BY)}")
    if tc.scheduler not in SCHEDULERS:
        raise ConfigError(f"train.scheduler {tc.scheduler!r}: use one of {', '.join(SCHEDULERS)}")
    if tc.accumulation < 1 or tc.early_stopping < 0 or tc.retrain_epochs < 0:
        raise ConfigError("train.accumulation must be >= 1, train.early_stopping and "
                         f"train.retrain_epochs >= 0 (got {tc.accumulation}, "
                         f"{tc.early_stopping}, {tc.retrain_epochs})")


def train_regressor(cfg: RealismConfig, train_clips: Sequence[Clip], val_clips: Sequence[Clip] = (),
                    out_dir: str | os.PathLike | None = None,
                    log: Callable[[str], None] = print) -> TrainResult:
    """Train on ``train_clips``; choose the epoch by validation when ``val_clips`` is given."""
    check_train_config(cfg)
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
                         init=result.model.state_dict(), mos_centre=result.mos_centre)
        result.model, result.retrained_path = retrained.model, retrained.best_path
        result.history += [{**row, "phase": "retrain"} for row in retrained.history]
    return result


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
    best = BestTracker(tc.select_by if val_clips else "epoch",
                       higher_is_better=not val_clips or tc.select_by not in _LOWER_IS_BETTER)
    result = TrainResult(model, mos_centre=mos_centre)
    best_state = None
    start = 0
    found = run.resume(tc.resume and out_dir is not None, map_location=device, required=False)
    if found is not None:
        path, ckpt = found
        check_same_architecture(path, ckpt["model"], model.state_dict())
        trainer.set_precision(run.resume_precision(path, ckpt, tc.precision))
        trainer.load_state_dict(ckpt)
        start, result.history = ckpt["next_epoch"], list(ckpt["history"])
        best.load_state_dict(ckpt["best"])
        result.best_epoch = best.step
        if best.step >= 0:
            best_state = run.load(run.best_path, map_location=device)["model"]
            result.best_path = run.best_path
        run.restore_rng(ckpt, reseed=tc.seed + start)
        log(f"resumed from {path} at epoch {start}")
    loader = DataLoader(dataset, batch_size=min(tc.batch_size, len(dataset)), shuffle=True,
                        drop_last=len(dataset) > tc.batch_size, num_workers=tc.num_workers,
                        generator=trainer.shuffle, pin_memory=device.type == "cuda",
                        persistent_workers=tc.num_workers > 0)
    with run.open(purge_step=start):
        for epoch in range(start, tc.epochs):
            dataset.set_epoch(epoch)
            row = {"epoch": epoch, "loss": trainer.train_epoch(loader), "lr": trainer.lr,
                   **trainer.epoch_metrics()}
            val = None
            if val_clips:
                pred = predict_clips(model, val_clips, cfg.sampler, inputs=cfg.model.inputs,
                                     size=cfg.data.image_size, device=device, seed=tc.seed,
                                     draws=tc.val_draws, precision=tc.precision)
                val = metrics.mos_report([c.mos for c in val_clips], pred)
                row.update({f"val_{k}": v for k, v in val.items() if k != "n"})
            result.history.append(row)
            log("epoch {epoch:3d}  loss {loss:.4f}".format(**row) + (
                "  val plcc {val_plcc:.3f} srcc {val_srcc:.3f} rmse {val_rmse:.3f}".format(**row)
                if val else ""))
            run.scalars({k.replace("val_", "val/"): v for k, v in row.items() if k != "epoch"},
                        epoch)
            # Without validation the last epoch is the "best" one.
            improved = best.update(val[tc.select_by] if val else float(epoch), epoch)
            trainer.end_epoch(val[tc.select_by] if val else row["loss"])
            if improved:
                result.best_epoch = epoch
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            progress = {"epoch": int(epoch), "next_epoch": epoch + 1, "val": val or {},
                        "mos_centre": float(mos_centre), "history": result.history,
                        "best": best.state_dict(), "weights_source": weights_source}
            run.save(trainer, progress, last=True, best=improved)
            if improved and run.best_path is not None:
                result.best_path = run.best_path
            if tc.early_stopping and val and epoch - best.step >= tc.early_stopping:
                result.stopped = "early_stopping"
                log(f"early stopping: no better val {tc.select_by} for {tc.early_stopping} "
                    f"epochs (best epoch {best.step})")
                break
            if run.out_of_time():
                result.stopped = "time"
                log(f"time budget of {tc.max_minutes} min used after epoch {epoch}; "
                    f"train.resume=true continues from {run.last_path}")
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return result
