"""The realism trainer's :class:`mrigan.loop.TrainerPlugin`: optimizer, AMP scaler, the
loader's shuffle generator and (accumulated) steps; its learning-rate schedule
(:func:`lr_schedule`) is applied by :func:`mrigan.loop.fit`, which also checks every loss.

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
from mrigan.lr_schedules import CosineLr, LrSchedule, PlateauLr


def lr_schedule(cfg: RealismConfig) -> LrSchedule:
    """``train.scheduler``: ``cosine`` over ``train.epochs`` (torch's CosineAnnealingLR values,
    stepped once an epoch), ``plateau`` (``ReduceLROnPlateau`` on the validation ``select_by``,
    on the training loss without validation clips) or ``none``."""
    tc = cfg.train
    if tc.scheduler == "cosine":
        return CosineLr(tc.lr, max(tc.epochs, 1), per="epoch")
    if tc.scheduler == "plateau":
        return PlateauLr(tc.lr, factor=tc.plateau_factor, patience=tc.plateau_patience)
    return LrSchedule(tc.lr)


class RegressorTrainer:
    """The realism trainer's :class:`mrigan.loop.TrainerPlugin`: model, AdamW, AMP scaler and
    the loader's shuffle generator, and (accumulated) steps."""

    def __init__(self, cfg: RealismConfig, model: torch.nn.Module, device: torch.device) -> None:
        tc = cfg.train
        self.cfg, self.model, self.device = cfg, model, device
        self.loss_fn = build_loss(tc.loss)
        self.opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
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
                "scaler": self.scaler.state_dict(), "shuffle_rng": self.shuffle.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.shuffle.set_state(state["shuffle_rng"].cpu())

    @property
    def lr(self) -> float:
        return float(self.opt.param_groups[0]["lr"])

    def set_lr(self, lr: float) -> None:
        for group in self.opt.param_groups:
            group["lr"] = lr

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
        self.scaler.scale(loss * scale if scale != 1.0 else loss).backward()
        return loss.detach()

    def optimizer_step(self) -> None:
        if self.cfg.train.grad_clip > 0:
            self.scaler.unscale_(self.opt)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.grad_clip)
        self.scaler.step(self.opt)
        self.scaler.update()

    def start_epoch(self) -> None:
        """Training mode; per-epoch sums start anew (DA-CLIP: its loss terms)."""
        self.model.train()

    def train_batch(self, i: int, n_batches: int, batch: dict) -> torch.Tensor:
        """Micro-batch ``i`` of an epoch of ``n_batches``: every ``train.accumulation``
        micro-batches make one optimizer step (a last incomplete group too). Its loss."""
        accumulation = self.cfg.train.accumulation
        group_start = i - i % accumulation
        group_size = min(accumulation, n_batches - group_start)
        if i == group_start:
            self.opt.zero_grad(set_to_none=True)
        loss = self.backward(batch, 1.0 / group_size)
        if i == group_start + group_size - 1:
            self.optimizer_step()
        return loss

    def train_epoch(self, loader: DataLoader) -> float:
        """One epoch of :meth:`train_batch`; the mean loss."""
        self.start_epoch()
        n_batches = len(loader)
        return float(np.mean([float(self.train_batch(i, n_batches, batch))
                              for i, batch in enumerate(loader)]))

    def epoch_metrics(self) -> dict[str, float]:
        """Extra numbers of the last epoch for its history row (none here; DA-CLIP: the means
        of its three loss terms)."""
        return {}
