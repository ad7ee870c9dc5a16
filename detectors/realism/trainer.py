"""The realism trainer's :class:`mrigan.loop.TrainerPlugin`: optimizer, scheduler, AMP scaler,
the loader's shuffle generator and one epoch of (accumulated) steps.

:class:`RegressorTrainer` trains any realism model whose ``forward(batch)`` predicts MOS with
``train.loss``; a model with another objective subclasses it and overrides
:meth:`RegressorTrainer.compute_loss` (DA-CLIP: ``detectors.realism.da_clip_train``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from detectors.realism.config import RealismConfig
from detectors.realism.losses import build_loss
from mrigan.device import autocast, resolve_precision
from mrigan.loop import NonFiniteLossError

LOWER_IS_BETTER = {"rmse", "mae", "loss"}


class RegressorTrainer:
    """The realism trainer's :class:`mrigan.loop.TrainerPlugin`: model, AdamW, scheduler, AMP
    scaler and the loader's shuffle generator, and one epoch of (accumulated) steps."""

    def __init__(self, cfg: RealismConfig, model: torch.nn.Module, device: torch.device) -> None:
        tc = cfg.train
        self.cfg, self.model, self.device = cfg, model, device
        self.loss_fn = build_loss(tc.loss)
        self.opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
        self.sched: Any = None
        if tc.scheduler == "cosine":
            self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=max(tc.epochs, 1))
        elif tc.scheduler == "plateau":
            self.sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.opt, mode="min" if tc.select_by in LOWER_IS_BETTER else "max",
                factor=tc.plateau_factor, patience=tc.plateau_patience)
        self.set_precision(resolve_precision(device, tc.precision, job="training"))
        self.shuffle = torch.Generator().manual_seed(tc.seed)  # the loader's order, resumable

    def set_precision(self, precision: str) -> None:
        """Train in ``precision`` (resolved: fp32 | bf16 | fp16); fp16 brings a gradient scaler
        (bf16/fp32: none). A resumed run calls it with the recorded precision before loading
        the checkpoint (:meth:`mrigan.loop.TrainingRun.resume_precision`)."""
        self.precision = precision
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=precision == "fp16")

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict() if self.sched is not None else {},
                "scaler": self.scaler.state_dict(), "shuffle_rng": self.shuffle.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        if self.sched is not None:
            self.sched.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.shuffle.set_state(state["shuffle_rng"].cpu())

    @property
    def lr(self) -> float:
        return float(self.opt.param_groups[0]["lr"])

    def compute_loss(self, batch: dict) -> torch.Tensor:
        """The training loss of one (micro-)batch: ``train.loss`` of the predicted MOS.
        Other models override it (DA-CLIP: Eq. 7 with the batch's descriptions)."""
        inputs = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()
                  if k in ("plain", "mri")}
        with autocast(self.device, self.precision):
            pred = self.model(inputs)
        return self.loss_fn(pred.float(), batch["mos"].to(self.device))

    def backward(self, batch: dict, scale: float = 1.0) -> torch.Tensor:
        """Forward one (micro-)batch and add ``loss * scale``'s gradients; returns the loss."""
        loss = self.compute_loss(batch)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"loss is {float(loss)}; lower train.lr")
        self.scaler.scale(loss * scale if scale != 1.0 else loss).backward()
        return loss.detach()

    def optimizer_step(self) -> None:
        if self.cfg.train.grad_clip > 0:
            self.scaler.unscale_(self.opt)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.grad_clip)
        self.scaler.step(self.opt)
        self.scaler.update()

    def train_epoch(self, loader: DataLoader) -> float:
        """One epoch; every ``train.accumulation`` micro-batches make one optimizer step."""
        self.model.train()
        accumulation = self.cfg.train.accumulation
        n_batches = len(loader)
        losses = []
        for i, batch in enumerate(loader):
            group_start = i - i % accumulation
            group_size = min(accumulation, n_batches - group_start)
            if i == group_start:
                self.opt.zero_grad(set_to_none=True)
            losses.append(float(self.backward(batch, 1.0 / group_size)))
            if i == group_start + group_size - 1:
                self.optimizer_step()
        return float(np.mean(losses))

    def epoch_metrics(self) -> dict[str, float]:
        """Extra numbers of the last epoch for its history row (none here; DA-CLIP: the means
        of its three loss terms)."""
        return {}

    def end_epoch(self, monitored: float) -> None:
        if isinstance(self.sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.sched.step(monitored)
        elif self.sched is not None:
            self.sched.step()
