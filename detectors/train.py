"""Detector training: Adam or AdamW (constant or cosine learning rate), BCE with label
smoothing (or focal loss), class balance, augmentations by name, TensorBoard, checkpoints with
exact resume, best on validation AUC (optionally with BatchNorm statistics recomputed first:
``train.bn_recalibrate``, :mod:`detectors.precise_bn`).

``train_detector(cfg)`` writes ``<out_dir>/<name>/``: ``config.yaml``, ``checkpoints/last.pt``
and ``best.pt``, ``tb/`` (TensorBoard), ``history.json`` (one line of validation metrics per
epoch). A run stopped at a checkpoint (``train.max_steps``, or the end of an epoch) continues from
``last.pt`` batch for batch, with the same weights it would have had without the stop: epoch
orders and augmentations are functions of (seed, epoch, item), and the RNG state is saved.
A run killed between checkpoints loses the steps since the last one (``train.checkpoint_every``
adds mid-epoch checkpoints for long epochs).

Under ``torchrun`` every rank computes the same global batches and trains on its shard (DDP
averages the gradients), so ``train.batch_size`` is the global batch whatever the number of
processes; only rank 0 writes.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from detectors.aggregate import apply_rule, group_by_video
from detectors.augment import build_augmenter
from detectors.backbones import weights_record
from detectors.config import DetectorConfig
from detectors.data import (
    ClipDataset,
    FaceDataset,
    check_grouped,
    group_splits,
    load_rows,
    select_rows,
)
from detectors.freezing import Freezer
from detectors.inputs import build_input
from detectors.losses import LOSSES, class_weights
from detectors.metrics import binary_report, warn_if_scores_tie
from detectors.model import build_detector
from detectors.precise_bn import recalibrate_batchnorm, trainable_norms
from detectors.predict import forward_batch, predict_probs, resolve_channels_last
from detectors.samplers import epoch_batches
from mrigan import distributed
from mrigan.checkpoint import seed_everything
from mrigan.device import resolve_device, resolve_precision
from mrigan.fileio import atomic_write_json
from mrigan.loop import (
    Cadence,
    LoopState,
    Task,
    TrainingRun,
    TrainResult,
    check_same_architecture,
    fit,
)
from mrigan.lr_schedules import CosineLr, LrSchedule
from mrigan.pretrained import provenance_mismatch

CHECKPOINT_FORMAT = "mrigan-detector/1"


def make_dataset(rows, adapter, cfg: DetectorConfig, augment=None):
    if cfg.model.temporal:
        return ClipDataset(rows, adapter.path_of, cfg.data.image_size, cfg.model.clip_length,
                           augment)
    return FaceDataset(rows, adapter.path_of, cfg.data.image_size, augment)


def split_rows(cfg: DetectorConfig) -> tuple[list[dict], list[dict]]:
    """Train and validation rows, grouped by identity and video (checked or recomputed)."""
    if not cfg.data.root:
        raise ValueError("data.root is empty: point it at an MRI-DF folder (manifest.csv)")
    rows = load_rows(cfg.data.root)
    if cfg.data.regroup:
        rows = group_splits(rows, val_fraction=cfg.data.val_fraction,
                            test_fraction=cfg.data.test_fraction, seed=cfg.data.split_seed)
    check_grouped(rows)
    train = select_rows(rows, split=cfg.data.train_split,
                        max_per_video=cfg.data.max_faces_per_video, fakes=cfg.data.train_fakes)
    val = select_rows(rows, split=cfg.data.val_split, max_per_video=cfg.data.max_faces_per_video)
    if not train:
        raise ValueError(f"{cfg.data.root}: no rows in split {cfg.data.train_split!r}")
    return train, val


def make_optimizer(model: torch.nn.Module, tc) -> torch.optim.Optimizer:
    """``train.optimizer``: Adam (the paper's; ``weight_decay`` is L2 added to the gradient)
    or AdamW (decoupled weight decay, Loshchilov & Hutter)."""
    cls = torch.optim.AdamW if tc.optimizer == "adamw" else torch.optim.Adam
    return cls(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)


def planned_steps(tc, batches_per_epoch: int) -> int:
    """Optimiser steps of ``train.epochs`` full epochs. ``max_steps`` is a stop, not a plan: a
    run stopped there and resumed follows the same learning-rate curve as one never stopped."""
    return tc.epochs * batches_per_epoch


def lr_schedule(tc, total_steps: int) -> LrSchedule:
    """``train.scheduler``: ``cosine``, half a cosine from ``lr`` at step 0 to 0 after the last
    planned step (:class:`mrigan.loop.CosineLr`), or ``none``, constant. A function of the step
    alone, so a resumed run continues on the same curve."""
    if tc.scheduler == "cosine":
        return CosineLr(tc.lr, total_steps, per="step")
    return LrSchedule(tc.lr)


def lr_at(tc, step: int, total_steps: int) -> float:
    """The learning rate of optimiser step ``step`` (0-based) of ``total_steps`` planned."""
    return lr_schedule(tc, total_steps).lr(step, 0)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


class DetectorTrainer:
    """The detector's :class:`mrigan.loop.TrainerPlugin`: the model, its Adam(W) optimizer and the
    backbone freezing schedule (``train.freeze``, a function of the epoch: nothing to save)."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 freezer: Freezer | None = None) -> None:
        self.model, self.optimizer, self.freezer = model, optimizer, freezer

    def freeze_for(self, epoch: int) -> bool:
        """Freeze / unfreeze for ``epoch``. True when the trainable parameters changed (a
        DistributedDataParallel wrapper must then be rebuilt: it registers them once)."""
        return self.freezer.apply(epoch) if self.freezer is not None else False

    def update(self, loss: torch.Tensor) -> None:
        """One optimiser step on ``loss`` (gradients set to None first)."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def train_mode(self, ddp_model: torch.nn.Module) -> None:
        """Training mode, with the BatchNorm layers of frozen groups in eval mode."""
        ddp_model.train()
        if self.freezer is not None:
            self.freezer.freeze_norm_stats()

    def state_dict(self) -> dict:
        return {"model": distributed.unwrap(self.model).state_dict(),
                "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])


def batch_loss(ddp_model, adapter, batch: dict, device: torch.device, tc, loss_fn,
               weights: torch.Tensor | None, channels_last: bool,
               precision: str | None = None) -> torch.Tensor:
    """The training loss of one collated batch (forward under ``precision``, the run's
    resolved training precision; ``None``: ``tc.precision`` resolved for training; the loss in
    fp32 on the fp32 head's logits). The loop and ``bench/detect.py`` both call it."""
    if precision is None:
        precision = resolve_precision(device, tc.precision, job="training")
    logits = forward_batch(ddp_model, adapter, batch, device, precision, channels_last)
    targets = batch["label"].to(device).float()
    w = weights[targets.long()] if weights is not None else None
    return loss_fn(logits, targets, w, label_smoothing=tc.label_smoothing, alpha=tc.focal_alpha,
                   gamma=tc.focal_gamma)


def _validate(model, adapter, dataset, cfg: DetectorConfig, device) -> dict:
    probs = predict_probs(model, adapter, dataset, batch_size=cfg.train.batch_size, device=device,
                          precision=cfg.train.precision, workers=cfg.data.workers,
                          channels_last=resolve_channels_last(device, cfg.train.channels_last))
    warn_if_scores_tie(probs, "validation")  # a collapsed (constant) model: say so
    labels = np.asarray(dataset.labels)
    report = binary_report(labels, probs, 0.5)
    out = {k: report[k] for k in ("auc", "eer", "ap", "accuracy", "balanced_accuracy", "f1")}
    # video AUC of the mean rule: a cheap look at the level the paper reports

    videos = group_by_video(dataset.units, probs)
    out["video_auc_mean"] = apply_rule("mean", videos, {}).report()["auc"]
    return out


class DetectorTask(Task):
    """The detector as a :class:`mrigan.loop.Task`: epochs of class-balanced batches (each
    epoch's freezing stage, augmentation key and loader set up when it starts), BCE/focal
    steps, validation AUC (precise BN first when asked), its checkpoint keys and logs."""

    select_by = "auc"

    def __init__(self, cfg: DetectorConfig, trainer: DetectorTrainer, adapter, train_ds,
                 val_ds, device: torch.device, run: TrainingRun, say, weights_source: dict,
                 channels_last: bool) -> None:
        self.cfg, self.trainer, self.adapter, self.run = cfg, trainer, adapter, run
        self.train_ds, self.val_ds, self.device, self._say = train_ds, val_ds, device, say
        self.weights_source, self.channels_last = weights_source, channels_last
        tc = cfg.train
        self.seed, self.precision_setting = tc.seed, tc.precision
        self.nonfinite_hint = "Lower train.lr or use train.precision=fp32."
        self.schedule = lr_schedule(tc, 0)  # its total is set when each epoch starts
        self.weights = class_weights(train_ds.labels, device) if tc.balance == "weight" else None
        self.loss_fn = LOSSES.get(tc.loss)
        self.input_info = adapter.describe()
        self.ddp_model = distributed.wrap_ddp(trainer.model, device)
        self.epoch_batches: list[list[int]] = []

    def say(self, message: str) -> None:
        self._say(message)

    def batches(self, epoch: int, batch_in_epoch: int):
        tc, cfg, model = self.cfg.train, self.cfg, self.trainer.model
        for e in range(epoch, tc.epochs):
            self.train_ds.augment_key = (tc.seed, e)
            batches = epoch_batches(self.train_ds.labels, self.train_ds.pair_keys,
                                    balance=tc.balance, batch_size=tc.batch_size, epoch=e,
                                    seed=tc.seed)
            start = batch_in_epoch if e == epoch else 0
            mine = [distributed.shard_indices(b) for b in batches[start:]]
            # the loader draws its worker seeds from its own generator, not from the global
            # RNG that dropout uses, so stopping and resuming mid-epoch changes nothing
            loader = DataLoader(self.train_ds, batch_sampler=mine, num_workers=cfg.data.workers,
                                pin_memory=self.device.type == "cuda",
                                generator=torch.Generator().manual_seed(tc.seed + e))
            if self.trainer.freeze_for(e):
                self.say(f"epoch {e}: {self.trainer.freezer.describe()}")
                if distributed.is_distributed():
                    self.ddp_model = None  # the old wrapper goes first (distributed.rewrap_ddp)
                    self.ddp_model = distributed.rewrap_ddp(model, self.device)
            self.trainer.train_mode(self.ddp_model)
            self.epoch_batches = batches
            self.schedule.total = planned_steps(tc, len(batches))
            for i, batch in enumerate(loader, start):
                yield ((e, i + 1) if i + 1 < len(batches) else (e + 1, 0)), batch

    def set_lr(self, lr: float) -> None:
        set_lr(self.trainer.optimizer, lr)

    def train_step(self, batch, step: int) -> dict[str, torch.Tensor]:
        loss = batch_loss(self.ddp_model, self.adapter, batch, self.device, self.cfg.train,
                          self.loss_fn, self.weights, self.channels_last, self.run.precision)
        self.trainer.update(loss)
        return {"loss": loss.detach()}

    def state_dict(self) -> dict:
        return self.trainer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.trainer.load_state_dict(state)

    def validate(self, state: LoopState) -> dict[str, float]:
        if self.cfg.train.bn_recalibrate > 0:
            _recalibrate(self.trainer.model, self.trainer, self.ddp_model, self.adapter,
                         self.train_ds, self.epoch_batches, self.cfg, self.device,
                         self.run.precision)
        if self.val_ds is None:
            return {}
        return _validate(self.ddp_model, self.adapter, self.val_ds, self.cfg, self.device)

    # --- checkpoint keys (mrigan-detector/1) -----------------------------------------------

    def progress(self, state: LoopState) -> dict:
        best = state.best
        return {"epoch": state.epoch, "batches_done": state.batch_in_epoch, "step": state.step,
                "best_auc": -math.inf if best.value is None else best.value,
                "best_epoch": best.epoch, "best_step": best.step, "history": state.history,
                "input": self.input_info, "weights_source": self.weights_source}

    def read_progress(self, ckpt, state: LoopState) -> None:
        state.epoch, state.batch_in_epoch, state.step = (ckpt["epoch"], ckpt["batches_done"],
                                                         ckpt["step"])
        best = state.best
        best.epoch = ckpt["best_epoch"]
        best.step = ckpt.get("best_step", 0 if best.epoch >= 0 else -1)  # before fit(): epochs
        best.value = ckpt["best_auc"] if best.step >= 0 else None
        state.history = list(ckpt["history"])

    def check_resume(self, path: Path, ckpt) -> None:
        check_same_architecture(path, ckpt["model"], self.trainer.model.state_dict())
        other = provenance_mismatch(ckpt.get("weights_source"), self.weights_source)
        if other:
            self.say(f"warning: {path}: {other}")

    # --- logs ------------------------------------------------------------------------------

    def history_row(self, state: LoopState, metrics) -> dict:
        return {"epoch": state.trained_epoch, "step": state.step,
                "complete": state.batch_in_epoch == 0, **metrics}

    def report(self, state: LoopState, row, improved: bool) -> None:
        metrics = {k: v for k, v in row.items() if k not in ("epoch", "step", "complete")}
        self.run.scalars(metrics, state.step, "val/")
        self.say(f"epoch {state.trained_epoch} step {state.step}: "
                 + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        if self.run.dist.is_main:
            atomic_write_json(self.run.run_dir / "history.json", state.history)

    def after_step(self, state: LoopState, losses, batch) -> None:
        step, every = state.step, self.cfg.train.log_every
        if every and (step % every == 0 or step == 1):  # log_every 0: no loss logs
            mean_loss = distributed.all_reduce_mean(losses["loss"]).item()  # all ranks
            self.run.scalars({"train/loss": mean_loss,
                              "train/lr": self.trainer.optimizer.param_groups[0]["lr"]}, step)
        if self.run.writer is not None and step == 1:
            _log_images(self.run.writer, self.adapter, batch, self.device)

    def started(self, run: TrainingRun, state: LoopState) -> None:
        if run.dist.is_main:  # beside config.yaml: where the starting weights came from
            atomic_write_json(run.run_dir / "weights_source.json", self.weights_source)


def train_detector(cfg: DetectorConfig, *, log=print) -> TrainResult:
    dist_info = distributed.setup()
    main = dist_info.is_main
    say = log if main else (lambda *_a, **_k: None)
    device = resolve_device(cfg.train.device)
    tc = cfg.train
    run = TrainingRun(Path(cfg.out_dir) / cfg.name, cfg, fmt=CHECKPOINT_FORMAT,
                      max_minutes=tc.max_minutes,
                      precision=resolve_precision(device, tc.precision, job="training"))
    seed_everything(tc.seed + dist_info.rank)

    train_rows, val_rows = split_rows(cfg)
    with distributed.main_process_first():  # rank 0 fills an MRI cache, the others then read it
        adapter = build_input(cfg.input, cfg.data.root, device=device,
                              rows=train_rows + val_rows, log=say)
    augment = build_augmenter(tc.augment, cfg.data.image_size,
                              max_frames=cfg.model.clip_length if cfg.model.temporal else 1,
                              params=tc.augment_params)
    train_ds = make_dataset(train_rows, adapter, cfg, augment)
    val_ds = make_dataset(val_rows, adapter, cfg) if val_rows else None
    say(f"train: {len(train_ds)} {'clips' if cfg.model.temporal else 'faces'} "
        f"({sum(train_ds.labels)} fake), val: {len(val_ds) if val_ds else 0}; input "
        f"{adapter.describe()}; device {device}")
    if val_ds is None:
        say(f"warning: no validation split {cfg.data.val_split!r}: best.pt = last.pt")

    model = build_detector(cfg.model).to(device)
    weights_source = weights_record(cfg.model.backbone, cfg.model.weights)
    if weights_source.get("package"):
        say(f"backbone {cfg.model.backbone}: ImageNet weights {weights_source['file']} from "
            f"{weights_source['package']} {weights_source['version']} "
            f"(sha256 {weights_source['sha256'][:12]})")
    channels_last = resolve_channels_last(device, tc.channels_last)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, tc)
    trainer = DetectorTrainer(model, optimizer, Freezer(model, tc.freeze))
    if tc.freeze.enabled and not cfg.model.weights:
        say("warning: train.freeze without model.weights: frozen groups keep random weights")
    task = DetectorTask(cfg, trainer, adapter, train_ds, val_ds, device, run, say,
                        weights_source, channels_last)
    cadence = Cadence(epochs=tc.epochs, max_steps=tc.max_steps, max_minutes=tc.max_minutes,
                      eval_every_epochs=max(1, tc.val_every),
                      checkpoint_every=tc.checkpoint_every, checkpoint_epochs=True)
    return fit(task, run, cadence, resume=tc.resume)


def _recalibrate(model, trainer: DetectorTrainer, ddp_model, adapter, train_ds, batches, cfg,
                 device, precision: str) -> None:
    """Precise BN before a validation: the trainable BatchNorm layers' running statistics
    become the average over the epoch's first ``train.bn_recalibrate`` batches (the epoch's
    augmentation; every rank uses the same global batches, so all ranks agree)."""
    trainer.train_mode(ddp_model)  # which norms train: the frozen groups' stay as they are
    net = distributed.unwrap(model)
    norms = trainable_norms(net)
    use = batches[: cfg.train.bn_recalibrate]
    loader = DataLoader(train_ds, batch_sampler=use, num_workers=cfg.data.workers,
                        pin_memory=device.type == "cuda", generator=torch.Generator())
    channels_last = resolve_channels_last(device, cfg.train.channels_last)
    recalibrate_batchnorm(net, norms, loader, lambda m, b: forward_batch(
        m, adapter, b, device, precision, channels_last))
    trainer.train_mode(ddp_model)


def _log_images(writer, adapter, batch, device) -> None:
    """The first batch as the model sees it (faces or MRIs), as a TensorBoard image grid."""
    import torchvision

    images = batch["image"][:16].to(device)
    with torch.no_grad():
        seen = adapter(images)
    if seen.ndim == 5:
        seen = seen[:, 0]
    writer.add_image("train/inputs", torchvision.utils.make_grid(seen.float().cpu(), nrow=8), 0)
