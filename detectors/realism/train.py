"""Fine-tune a realism regressor (backbone + pooling head) on rated clips.

One epoch draws one random sequence per training clip; validation predicts each validation
clip from ``train.val_draws`` sequences and keeps the epoch with the best ``train.select_by``
(``best.pt``); ``last.pt`` is written every epoch. Checkpoints are plain dicts (config as a
dict, state dict, epoch, validation report) readable with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from detectors.realism import metrics
from detectors.realism.clips import Clip
from detectors.realism.config import RealismConfig
from detectors.realism.data import RealismDataError
from detectors.realism.dataset import ClipDataset
from detectors.realism.losses import build_loss
from detectors.realism.model import ModelConfig, RealismRegressor
from detectors.realism.predict import predict_clips
from mrigan.checkpoint import CheckpointError, load_checkpoint, save_checkpoint, seed_everything
from mrigan.config import from_dict, to_dict
from mrigan.device import autocast, resolve_device, use_channels_last
from mrigan.errors import MriganError


class NonFiniteRealismLossError(MriganError, FloatingPointError):
    """The training loss became NaN or infinite (lower train.lr)."""


CHECKPOINT_KIND = "mrigan-realism-regressor"
_LOWER_IS_BETTER = {"rmse", "mae"}


@dataclass
class TrainResult:
    model: RealismRegressor
    history: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_path: Path | None = None


def _better(metric: str, new: float, old: float | None) -> bool:
    if old is None:
        return True
    if math.isnan(new):
        return False
    return new < old if metric in _LOWER_IS_BETTER else new > old


def checkpoint_state(model: RealismRegressor, cfg: RealismConfig, epoch: int,
                     val: dict | None, mos_centre: float) -> dict:
    return {"kind": CHECKPOINT_KIND, "config": to_dict(cfg), "model": model.state_dict(),
            "epoch": int(epoch), "val": val or {}, "mos_centre": float(mos_centre)}


def load_regressor(path: str | os.PathLike, device: str | torch.device = "cpu"
                   ) -> tuple[RealismRegressor, RealismConfig]:
    """A trained regressor and the config it was trained with, from ``best.pt``/``last.pt``."""
    state = load_checkpoint(path, map_location="cpu")
    if state.get("kind") != CHECKPOINT_KIND:
        raise CheckpointError(f"{path}: not a realism regressor checkpoint (kind={state.get('kind')!r})")
    cfg = from_dict(RealismConfig, state["config"], where=str(path))
    # Local backbone weights are inside the state dict: do not require their file again.
    model_cfg = from_dict(ModelConfig, {**to_dict(cfg.model), "weights": ""}, where=str(path))
    model = RealismRegressor(model_cfg, mos_centre=state.get("mos_centre", 3.0))
    model.load_state_dict(state["model"])
    return model.to(resolve_device(device)).eval(), cfg


def train_regressor(cfg: RealismConfig, train_clips: Sequence[Clip], val_clips: Sequence[Clip] = (),
                    out_dir: str | os.PathLike | None = None,
                    log: Callable[[str], None] = print) -> TrainResult:
    """Train on ``train_clips``; choose the epoch by validation when ``val_clips`` is given."""
    tc = cfg.train
    if tc.select_by not in ("score", "srcc", "plcc", "rmse", "mae"):
        raise ValueError(f"train.select_by {tc.select_by!r}: use score, srcc, plcc, rmse or mae")
    if len(train_clips) < 2:
        raise RealismDataError(f"need at least 2 training clips, got {len(train_clips)}")
    if tc.threads:
        torch.set_num_threads(tc.threads)
    seed_everything(tc.seed)
    device = resolve_device(tc.device)
    mos_centre = float(np.mean([c.mos for c in train_clips]))
    model = RealismRegressor(cfg.model, mos_centre=mos_centre).to(device)
    if use_channels_last(device):
        model = model.to(memory_format=torch.channels_last)
        model.channels_last = True
    dataset = ClipDataset(train_clips, cfg.sampler, cfg.model.inputs, cfg.data.image_size, seed=tc.seed)
    loader = DataLoader(dataset, batch_size=min(tc.batch_size, len(dataset)), shuffle=True,
                        drop_last=len(dataset) > tc.batch_size, num_workers=tc.num_workers,
                        generator=torch.Generator().manual_seed(tc.seed),
                        pin_memory=device.type == "cuda", persistent_workers=tc.num_workers > 0)
    loss_fn = build_loss(tc.loss)
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(tc.epochs, 1))
    fp16 = device.type == "cuda" and (tc.precision == "fp16" or (
        tc.precision == "auto" and not torch.cuda.is_bf16_supported()))
    scaler = torch.amp.GradScaler(device.type, enabled=fp16)  # bf16/fp32 need no loss scaling

    ckpt_dir = Path(out_dir, "checkpoints") if out_dir else None
    writer = None
    if out_dir and tc.tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(Path(out_dir, "tb")))
    result = TrainResult(model)
    best_value: float | None = None
    best_state = None
    try:
        for epoch in range(tc.epochs):
            dataset.set_epoch(epoch)
            model.train()
            losses = []
            for batch in loader:
                inputs = {k: v.to(device, non_blocking=True) for k, v in batch.items()
                          if k in ("plain", "mri")}
                target = batch["mos"].to(device)
                opt.zero_grad(set_to_none=True)
                with autocast(device, tc.precision):
                    pred = model(inputs)
                loss = loss_fn(pred.float(), target)
                if not torch.isfinite(loss):
                    raise NonFiniteRealismLossError(f"epoch {epoch}: loss is {float(loss)}; "
                                                    "lower train.lr")
                scaler.scale(loss).backward()
                if tc.grad_clip > 0:
                    scaler.unscale_(opt)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
                scaler.step(opt)
                scaler.update()
                losses.append(float(loss.detach()))
            sched.step()
            row = {"epoch": epoch, "loss": float(np.mean(losses))}
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
            if writer is not None:
                for k, v in row.items():
                    if k != "epoch":
                        writer.add_scalar(k.replace("val_", "val/"), v, epoch)
            # Without validation the last epoch is the "best" one.
            value = val[tc.select_by] if val else float(epoch)
            improved = _better(tc.select_by, value, best_value) if val else True
            state = checkpoint_state(model, cfg, epoch, val, mos_centre)
            if ckpt_dir:
                save_checkpoint(ckpt_dir / "last.pt", state)
            if improved:
                best_value, result.best_epoch = value, epoch
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                if ckpt_dir:
                    result.best_path = save_checkpoint(ckpt_dir / "best.pt", state)
    finally:
        if writer is not None:
            writer.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return result
