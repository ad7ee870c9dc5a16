"""Detector training: Adam, BCE with label smoothing (or focal loss), class balance,
augmentations by name, TensorBoard, checkpoints with exact resume, best on validation AUC.

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
from detectors.config import DetectorConfig
from detectors.data import (
    ClipDataset,
    FaceDataset,
    check_grouped,
    group_splits,
    load_rows,
    select_rows,
)
from detectors.inputs import build_input
from detectors.losses import LOSSES, class_weights
from detectors.metrics import binary_report, warn_if_scores_tie
from detectors.model import build_detector
from detectors.predict import forward_batch, predict_probs
from detectors.samplers import epoch_batches
from mrigan import distributed
from mrigan.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
    seed_everything,
)
from mrigan.config import save_config, to_dict
from mrigan.device import resolve_device
from mrigan.fileio import atomic_write_json

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
                        max_per_video=cfg.data.max_faces_per_video)
    val = select_rows(rows, split=cfg.data.val_split, max_per_video=cfg.data.max_faces_per_video)
    if not train:
        raise ValueError(f"{cfg.data.root}: no rows in split {cfg.data.train_split!r}")
    return train, val


def _checkpoint_state(model, optimizer, cfg, *, epoch, batches_done, step, best_auc,
                      best_epoch, history, input_info) -> dict:
    return {"format": CHECKPOINT_FORMAT, "model": distributed.unwrap(model).state_dict(),
            "optimizer": optimizer.state_dict(), "epoch": epoch, "batches_done": batches_done,
            "step": step, "best_auc": best_auc, "best_epoch": best_epoch, "history": history,
            "config": to_dict(cfg), "input": input_info, "rng": capture_rng_state()}


def _validate(model, adapter, dataset, cfg: DetectorConfig, device) -> dict:
    probs = predict_probs(model, adapter, dataset, batch_size=cfg.train.batch_size, device=device,
                          precision=cfg.train.precision, workers=cfg.data.workers)
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
    run_dir = Path(cfg.out_dir) / cfg.name
    ckpt_dir = run_dir / "checkpoints"
    last_path, best_path = ckpt_dir / "last.pt", ckpt_dir / "best.pt"
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
    seed_everything(cfg.train.seed + dist_info.rank)

    train_rows, val_rows = split_rows(cfg)
    with distributed.main_process_first():  # rank 0 fills an MRI cache, the others then read it
        adapter = build_input(cfg.input, cfg.data.root, device=device,
                              rows=train_rows + val_rows, log=say)
    augment = build_augmenter(cfg.train.augment, cfg.data.image_size,
                              max_frames=cfg.model.clip_length if cfg.model.temporal else 1)
    train_ds = make_dataset(train_rows, adapter, cfg, augment)
    val_ds = make_dataset(val_rows, adapter, cfg) if val_rows else None
    say(f"train: {len(train_ds)} {'clips' if cfg.model.temporal else 'faces'} "
        f"({sum(train_ds.labels)} fake), val: {len(val_ds) if val_ds else 0}; input "
        f"{adapter.describe()}; device {device}")
    if val_ds is None:
        say(f"warning: no validation split {cfg.data.val_split!r}: best.pt = last.pt")

    model = build_detector(cfg.model).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr,
                                 weight_decay=cfg.train.weight_decay)
    start_epoch, batches_done, step = 0, 0, 0
    best_auc, best_epoch, history = -math.inf, -1, []
    if cfg.train.resume and last_path.is_file():
        state = load_checkpoint(last_path, map_location=device)
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{last_path}: not a detector checkpoint")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, batches_done, step = state["epoch"], state["batches_done"], state["step"]
        best_auc, best_epoch, history = state["best_auc"], state["best_epoch"], state["history"]
        restore_rng_state(state["rng"])
        say(f"resumed from {last_path}: epoch {start_epoch}, batch {batches_done}, step {step}")
    ddp_model = distributed.wrap_ddp(model, device)

    weights = class_weights(train_ds.labels, device) if cfg.train.balance == "weight" else None
    loss_fn = LOSSES.get(cfg.train.loss)
    loss_kwargs = {"label_smoothing": cfg.train.label_smoothing, "alpha": cfg.train.focal_alpha,
                   "gamma": cfg.train.focal_gamma}
    writer = None
    if main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run_dir / "tb"))
    input_info = adapter.describe()

    def save(path: Path, epoch: int, done: int) -> None:
        if main:
            save_checkpoint(path, _checkpoint_state(
                model, optimizer, cfg, epoch=epoch, batches_done=done, step=step,
                best_auc=best_auc, best_epoch=best_epoch, history=history,
                input_info=input_info))

    max_steps = cfg.train.max_steps
    stop = max_steps is not None and step >= max_steps
    epoch = start_epoch
    try:
        while epoch < cfg.train.epochs and not stop:
            train_ds.augment_key = (cfg.train.seed, epoch)
            batches = epoch_batches(train_ds.labels, train_ds.pair_keys,
                                    balance=cfg.train.balance, batch_size=cfg.train.batch_size,
                                    epoch=epoch, seed=cfg.train.seed)
            mine = [distributed.shard_indices(b) for b in batches[batches_done:]]
            # the loader draws its worker seeds from its own generator, not from the global
            # RNG that dropout uses, so stopping and resuming mid-epoch changes nothing
            loader = DataLoader(train_ds, batch_sampler=mine, num_workers=cfg.data.workers,
                                pin_memory=device.type == "cuda",
                                generator=torch.Generator().manual_seed(cfg.train.seed + epoch))
            ddp_model.train()
            for batch in loader:
                logits = forward_batch(ddp_model, adapter, batch, device, cfg.train.precision)
                targets = batch["label"].to(device).float()
                w = weights[targets.long()] if weights is not None else None
                loss = loss_fn(logits, targets, w, **loss_kwargs)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"loss is {loss.item()} at step {step}; last good checkpoint: {last_path}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                batches_done += 1
                if step % cfg.train.log_every == 0 or step == 1:
                    mean_loss = distributed.all_reduce_mean(loss.detach()).item()  # all ranks
                    if writer is not None:
                        writer.add_scalar("train/loss", mean_loss, step)
                if writer is not None and step == 1:
                    _log_images(writer, adapter, batch, device)
                if cfg.train.checkpoint_every and step % cfg.train.checkpoint_every == 0:
                    save(last_path, epoch, batches_done)
                if max_steps is not None and step >= max_steps:
                    stop = True
                    break
            epoch_done = batches_done >= len(batches)
            finishing = stop or (epoch_done and epoch + 1 >= cfg.train.epochs)
            validate = finishing or (epoch_done and (epoch + 1) % max(1, cfg.train.val_every) == 0)
            improved = False
            if validate:
                metrics = _validate(ddp_model, adapter, val_ds, cfg, device) if val_ds else {}
                history.append({"epoch": epoch, "step": step, "complete": epoch_done, **metrics})
                auc = metrics.get("auc", math.nan)
                improved = (val_ds is None or best_epoch < 0
                            or (not math.isnan(auc) and auc > best_auc))
                if improved:
                    best_auc, best_epoch = (auc if not math.isnan(auc) else best_auc), epoch
                if writer is not None:
                    for k, v in metrics.items():
                        writer.add_scalar(f"val/{k}", v, step)
                say(f"epoch {epoch} step {step}: " + ", ".join(f"{k} {v:.4f}"
                                                              for k, v in metrics.items()))
            if epoch_done:
                epoch, batches_done = epoch + 1, 0
            save(last_path, epoch, batches_done)
            if improved:
                save(best_path, epoch, batches_done)
            if main and validate:
                atomic_write_json(run_dir / "history.json", history)
    finally:
        if writer is not None:
            writer.close()
    distributed.barrier()
    return TrainResult(run_dir, last_path, best_path, best_auc, best_epoch, step, history)


def _log_images(writer, adapter, batch, device) -> None:
    """The first batch as the model sees it (faces or MRIs), as a TensorBoard image grid."""
    import torchvision

    images = batch["image"][:16].to(device)
    with torch.no_grad():
        seen = adapter(images)
    if seen.ndim == 5:
        seen = seen[:, 0]
    writer.add_image("train/inputs", torchvision.utils.make_grid(seen.float().cpu(), nrow=8), 0)
