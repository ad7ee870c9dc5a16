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
from dataclasses import dataclass, field
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
    BestTracker,
    NonFiniteLossError,
    TrainingRun,
    check_same_architecture,
)
from mrigan.pretrained import provenance_mismatch

CHECKPOINT_FORMAT = "mrigan-detector/1"


@dataclass
class TrainResult:
    run_dir: Path
    last: Path
    best: Path
    best_auc: float
    best_epoch: int
    steps: int
    history: list[dict] = field(default_factory=list)


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


def lr_at(tc, step: int, total_steps: int) -> float:
    """The learning rate of optimiser step ``step`` (0-based). ``cosine``: half a cosine from
    ``lr`` at step 0 to 0 after the last planned step. A function of the step alone, so a
    resumed run continues on the same curve with nothing extra in the checkpoint."""
    if tc.scheduler == "cosine" and total_steps > 0:
        return 0.5 * tc.lr * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))
    return tc.lr


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


def train_detector(cfg: DetectorConfig, *, log=print) -> TrainResult:
    dist_info = distributed.setup()
    main = dist_info.is_main
    say = log if main else (lambda *_a, **_k: None)
    device = resolve_device(cfg.train.device)
    tc = cfg.train
    run = TrainingRun(Path(cfg.out_dir) / cfg.name, cfg, fmt=CHECKPOINT_FORMAT,
                      max_minutes=tc.max_minutes,
                      precision=resolve_precision(device, tc.precision, job="training"))
    last_path, best_path = run.last_path, run.best_path
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
    start_epoch, batches_done, step = 0, 0, 0
    best, history = BestTracker("auc", higher_is_better=True, value=-math.inf), []
    found = run.resume(tc.resume, map_location=device, required=False)
    if found is not None:
        path, state = found
        check_same_architecture(path, state["model"], model.state_dict())
        other = provenance_mismatch(state.get("weights_source"), weights_source)
        if other:
            say(f"warning: {path}: {other}")
        run.resume_precision(path, state, tc.precision)
        trainer.load_state_dict(state)
        start_epoch, batches_done, step = state["epoch"], state["batches_done"], state["step"]
        best.load_state_dict({"value": state["best_auc"], "step": state["best_epoch"]})
        history = state["history"]
        run.restore_rng(state, reseed=tc.seed + 7919 * step)
        say(f"resumed from {path}: epoch {start_epoch}, batch {batches_done}, step {step}")
    ddp_model = distributed.wrap_ddp(model, device)

    weights = class_weights(train_ds.labels, device) if tc.balance == "weight" else None
    loss_fn = LOSSES.get(tc.loss)
    input_info = adapter.describe()

    def save(epoch: int, done: int, *, last: bool = True, best_too: bool = False) -> None:
        run.save(trainer, {"epoch": epoch, "batches_done": done, "step": step,
                           "best_auc": best.value, "best_epoch": best.step, "history": history,
                           "input": input_info, "weights_source": weights_source},
                 last=last, best=best_too)

    max_steps = tc.max_steps
    stop = max_steps is not None and step >= max_steps
    epoch = start_epoch
    with run.open(purge_step=step):
        if main:  # beside config.yaml: where the starting weights came from (no local path)
            atomic_write_json(run.run_dir / "weights_source.json", weights_source)
        writer = run.writer
        while epoch < tc.epochs and not stop:
            train_ds.augment_key = (tc.seed, epoch)
            batches = epoch_batches(train_ds.labels, train_ds.pair_keys, balance=tc.balance,
                                    batch_size=tc.batch_size, epoch=epoch, seed=tc.seed)
            mine = [distributed.shard_indices(b) for b in batches[batches_done:]]
            # the loader draws its worker seeds from its own generator, not from the global
            # RNG that dropout uses, so stopping and resuming mid-epoch changes nothing
            loader = DataLoader(train_ds, batch_sampler=mine, num_workers=cfg.data.workers,
                                pin_memory=device.type == "cuda",
                                generator=torch.Generator().manual_seed(tc.seed + epoch))
            if trainer.freeze_for(epoch):
                say(f"epoch {epoch}: {trainer.freezer.describe()}")
                if distributed.is_distributed():
                    ddp_model = None  # the old wrapper goes first (distributed.rewrap_ddp)
                    ddp_model = distributed.rewrap_ddp(model, device)
            trainer.train_mode(ddp_model)
            total_steps = planned_steps(tc, len(batches))
            for batch in loader:
                set_lr(optimizer, lr_at(tc, step, total_steps))
                loss = batch_loss(ddp_model, adapter, batch, device, tc, loss_fn, weights,
                                  channels_last, run.precision)
                run.check_finite(loss, f"step {step} (epoch {epoch})", NonFiniteLossError,
                                 "Lower train.lr or use train.precision=fp32.")
                trainer.update(loss)
                step += 1
                batches_done += 1
                if step % tc.log_every == 0 or step == 1:
                    mean_loss = distributed.all_reduce_mean(loss.detach()).item()  # all ranks
                    run.scalars({"train/loss": mean_loss,
                                 "train/lr": optimizer.param_groups[0]["lr"]}, step)
                if writer is not None and step == 1:
                    _log_images(writer, adapter, batch, device)
                if tc.checkpoint_every and step % tc.checkpoint_every == 0:
                    save(epoch, batches_done)
                if max_steps is not None and step >= max_steps:
                    stop = True
                    break
                if run.out_of_time():  # rank 0 decides
                    say(f"step {step}: time budget of {tc.max_minutes} min used; resume "
                        f"continues from {last_path}")
                    stop = True
                    break
            epoch_done = batches_done >= len(batches)
            finishing = stop or (epoch_done and epoch + 1 >= tc.epochs)
            validate = finishing or (epoch_done and (epoch + 1) % max(1, tc.val_every) == 0)
            improved = False
            if validate and tc.bn_recalibrate > 0:
                _recalibrate(model, trainer, ddp_model, adapter, train_ds, batches, cfg, device,
                             run.precision)
            if validate:
                metrics = _validate(ddp_model, adapter, val_ds, cfg, device) if val_ds else {}
                history.append({"epoch": epoch, "step": step, "complete": epoch_done, **metrics})
                auc = metrics.get("auc", math.nan)
                if val_ds is None or best.step < 0:
                    improved = True
                    best.value = auc if not math.isnan(auc) else best.value
                    best.step = epoch
                else:
                    improved = best.update(auc, epoch)
                run.scalars(metrics, step, "val/")
                say(f"epoch {epoch} step {step}: " + ", ".join(f"{k} {v:.4f}"
                                                              for k, v in metrics.items()))
            if epoch_done:
                epoch, batches_done = epoch + 1, 0
            save(epoch, batches_done, best_too=improved)
            if main and validate:
                atomic_write_json(run.run_dir / "history.json", history)
    distributed.barrier()
    return TrainResult(run.run_dir, last_path, best_path, best.value, best.step, step, history)


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
