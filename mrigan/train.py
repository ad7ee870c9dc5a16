"""MRI-GAN training: the GAN as a task of :func:`mrigan.loop.fit` (balanced epochs, held-out
evaluation, its checkpoint keys and logs); the loop gives checkpoints, exact resume, DDP, budget.

Python API::

    from mrigan.config import load_config
    from mrigan.train import GanConfig, train_gan
    cfg = load_config(GanConfig, "configs/mri_gan_cpu.yaml", ["data.root=/data/mri_df"])
    result = train_gan(cfg)        # continues the run's last.pt if any; resume=False: anew
    print(result.best_value, result.best_checkpoint)

Command line: ``mrigan train-gan --config configs/mri_gan.yaml --set data.root=...``; under
``torchrun --nproc_per_node=N`` the same command trains with DDP.

What a run guarantees:

* **Balanced epochs**: each epoch is every fake plus an equal random draw of reals
  (``mrigan.mri_df_format.balanced_indices``, a pure function of (epoch, seed)).
* **Global batch**: ``train.batch_size`` is the batch of one optimizer step summed over all
  processes; under DDP each rank takes its shard of the same global batch, so the result does not
  depend on the number of processes (exactly so without dropout, which draws per-rank noise).
* **Exact resume**: a checkpoint holds both models, both optimizers, the AMP scaler, epoch,
  position inside the epoch, step, every rank's RNG states, the eval history and the config;
  ``resume=True`` continues mid-epoch, and a killed-and-resumed run reaches the same weights as
  an uninterrupted one.
* **Best model on held-out data**: every ``eval_every`` steps the generator (eval mode) turns a
  fixed held-out sample of faces into MRIs; the figure ``train.select_by`` picks ``best.pt``:
  their mean SSIM against the true MRIs (data range 1; the default of existing runs, which
  rewards black maps) or a localization figure of :mod:`mrigan.localization` (``select`` =
  (face AUC + pixel AUC) / 2, which no constant map can win), each evaluation also recording
  the all-black and training-mean-map baselines in ``eval_history.json``. ``last.pt`` is written every ``checkpoint_every`` steps and at the end.
* **Non-finite losses stop the run** with :class:`NonFiniteLossError`; nothing is saved after
  the bad step, so ``last.pt`` stays the last good state.
* **Augmentation** (``augment.enabled``, :mod:`mrigan.paired_augment`): training batches only,
  never the held-out sample; its randomness is a function of (seed, rank, step), so resume stays
  exact and the trainer's other randomness (dropout) is not shifted by it.
* **Data loading keeps up with the step**: one DataLoader iterator over a
  :class:`RunBatchSampler` spans every remaining epoch, so worker processes start once per run
  (short epochs on tiny datasets pay no per-epoch start-up), load ``data.prefetch_factor``
  batches ahead each, into pinned memory on CUDA (``data.pin_memory``) for asynchronous copies.
  Evaluation, checkpoints and log reductions run only at their intervals, never per step.
* **Logs**: TensorBoard scalars (every loss term, mean SSIM, lr, images/s) and an image grid
  (face | true MRI | generated MRI per row) under ``<run>/tb``; ``<run>/eval_history.json``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from mrigan import distributed
from mrigan.checkpoint import CheckpointError, seed_everything
from mrigan.config import ConfigError, to_dict
from mrigan.device import resolve_switch
from mrigan.fileio import atomic_write_json
from mrigan.gan_config import (
    GanConfig,
    GanDataConfig,
    GanModelConfig,
    GanOptimConfig,
    GanTrainConfig,
    NonFiniteLossError,
    lr_factor,
    replace,
)
from mrigan.gan_trainer import (
    GanTrainer,
    HeldOut,
    evaluate_generator,
    image_grid,
    resolve_channels_last,
    resolve_precision,
    training_mean_map,
)
from mrigan.loop import (
    Cadence,
    LoopState,
    Task,
    TrainingRun,
    TrainResult,
    check_same_architecture,
    fit,
)
from mrigan.lr_schedules import LinearDecayLr
from mrigan.mri_df_format import MriDfDataset, balanced_indices
from mrigan.paired_augment import build_paired_augment, step_generator
from mrigan.pretrained import provenance_mismatch

__all__ = [
    "CHECKPOINT_FORMAT",
    "GanConfig",
    "GanDataConfig",
    "GanModelConfig",
    "GanOptimConfig",
    "GanTrainConfig",
    "GanTask",
    "GanTrainer",
    "HeldOut",
    "NonFiniteLossError",
    "RunBatchSampler",
    "TrainResult",
    "epoch_batches",
    "evaluate_generator",
    "image_grid",
    "lr_factor",
    "make_loader",
    "replace",
    "resolve_channels_last",
    "resolve_precision",
    "train_gan",
]

log = logging.getLogger("mrigan.train")

CHECKPOINT_FORMAT = "mrigan-gan-checkpoint/1"

StepCallback = Callable[[GanTrainer, int, dict[str, torch.Tensor]], None]


def epoch_batches(labels: Sequence[int], epoch: int, seed: int, batch_size: int) -> list[list[int]]:
    """The global batches of one balanced epoch (the last one may be smaller)."""
    order = balanced_indices(labels, epoch, seed)
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


class RunBatchSampler:
    """This rank's batches of every epoch from ``(epoch, batch_in_epoch)`` to ``epochs``, in order.

    A pure function of its arguments (each epoch is :func:`epoch_batches`), so a resumed run
    that starts it at the saved position sees exactly the batches an uninterrupted one saw. One
    sampler spans epochs so that one DataLoader iterator, and its workers, live for the whole
    run. :meth:`positions` yields the ``(epoch, batch_in_epoch)`` *after* each batch, in the
    same order, for the loop's progress counters (the next epoch starts at batch 0).
    """

    def __init__(self, labels: Sequence[int], seed: int, batch_size: int, epochs: int,
                 epoch: int = 0, batch_in_epoch: int = 0) -> None:
        self.labels, self.seed, self.batch_size = list(labels), seed, batch_size
        self.epochs, self.epoch, self.batch_in_epoch = epochs, epoch, batch_in_epoch

    def _walk(self):
        start = self.batch_in_epoch
        for epoch in range(self.epoch, self.epochs):
            batches = epoch_batches(self.labels, epoch, self.seed, self.batch_size)
            for b in range(start, len(batches)):
                after = (epoch, b + 1) if b + 1 < len(batches) else (epoch + 1, 0)
                yield after, batches[b]
            start = 0

    def __iter__(self):
        for _, batch in self._walk():
            yield distributed.shard_indices(batch)

    def positions(self):
        for after, _ in self._walk():
            yield after

    def __len__(self) -> int:
        """Batches left; every balanced epoch has the same length (2 x the fakes)."""
        per_epoch = len(epoch_batches(self.labels, 0, self.seed, self.batch_size))
        left = (self.epochs - self.epoch) * per_epoch - min(self.batch_in_epoch, per_epoch)
        return max(0, left)


def make_loader(train_set: MriDfDataset, sampler: RunBatchSampler, data: GanDataConfig,
                device: torch.device, seed: int) -> torch.utils.data.DataLoader:
    """The run's one DataLoader: workers persist, prefetch, and pin memory on CUDA (``auto``).

    It draws its workers' base seed from its own generator (seeded by ``seed``), never from the
    global RNG, so dropout noise is the same with or without a resume."""
    workers = data.num_workers
    pin = resolve_switch(data.pin_memory, device.type == "cuda", "data.pin_memory")
    extra = {"persistent_workers": True, "prefetch_factor": data.prefetch_factor} if workers else {}
    return torch.utils.data.DataLoader(
        train_set, batch_sampler=sampler, num_workers=workers, pin_memory=pin,
        generator=torch.Generator().manual_seed(seed), **extra)


class GanTask(Task):
    """The GAN as a :class:`mrigan.loop.Task`: balanced batches, :meth:`GanTrainer.train_step`
    (with the paired augmentation), the held-out evaluation, its checkpoint keys and logs."""

    def __init__(self, cfg: GanConfig, trainer: GanTrainer, train_set: MriDfDataset,
                 run: TrainingRun) -> None:
        self.cfg, self.trainer, self.train_set, self.run = cfg, trainer, train_set, run
        tc = cfg.train
        self.select_by, self.device, self.seed = tc.select_by, trainer.device, tc.seed
        self.precision_setting = tc.precision
        self.nonfinite_hint = "Lower optim.lr, use train.precision=fp32, or check the data."
        steps_per_epoch = len(epoch_batches(train_set.labels, 0, tc.seed, tc.batch_size))
        total_steps = tc.max_steps or tc.epochs * steps_per_epoch
        self.schedule = LinearDecayLr(cfg.optim.lr, total_steps, cfg.optim.decay_steps)
        self.augment = build_paired_augment(cfg.augment, cfg.model.image_size)
        self.held_out: HeldOut | None = None
        self.sums: dict[str, torch.Tensor] = {}
        self.n_summed = 0
        self.tick, self.tick_step = time.perf_counter(), 0
        self.compile_logged = False

    @property
    def higher_is_better(self) -> bool:
        return True  # every train.select_by figure (gan_config.SELECT_BY)

    # --- the protocol ----------------------------------------------------------------------

    def batches(self, epoch: int, batch_in_epoch: int):
        tc = self.cfg.train
        sampler = RunBatchSampler(self.train_set.labels, tc.seed, tc.batch_size, tc.epochs,
                                  epoch, batch_in_epoch)
        loader = make_loader(self.train_set, sampler, self.cfg.data, self.trainer.device,
                             tc.seed + epoch)
        self.tick = time.perf_counter()
        yield from zip(sampler.positions(), loader, strict=True)

    def train_step(self, batch, step: int) -> dict[str, torch.Tensor]:
        trainer, cfg = self.trainer, self.cfg
        face, mri = trainer.to_device(batch["image"]), trainer.to_device(batch["mri"])
        if cfg.augment.enabled:
            face, mri = self.augment(face, mri, step_generator(cfg.train.seed, step,
                                                               self.run.dist.rank))
            face, mri = trainer.to_device(face), trainer.to_device(mri)  # layout
        return trainer.train_step(face, mri)

    def set_lr(self, lr: float) -> None:
        if self.cfg.optim.decay_steps:  # else the optimizers' own (the same) constant lr
            self.trainer.set_lr(lr)

    def set_precision(self, precision: str | None) -> None:
        self.trainer.set_precision(precision)

    def state_dict(self) -> dict[str, Any]:
        return self.trainer.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.trainer.load_state_dict(state)

    def validate(self, state: LoopState) -> dict[str, float]:
        """Collective: rank 0 evaluates the held-out sample, every rank learns the figures."""
        result = evaluate_generator(self.trainer, self.held_out) if self.run.dist.is_main else {}
        return distributed.broadcast_object(result)

    # --- checkpoint keys (mrigan-gan-checkpoint/1) -----------------------------------------

    def progress(self, state: LoopState) -> dict[str, Any]:
        best = state.best
        return {"epoch": state.epoch, "batch_in_epoch": state.batch_in_epoch, "step": state.step,
                "best_mean_ssim": -math.inf if best.value is None else best.value,
                "best_step": best.step, "best_epoch": best.epoch, "select_by": best.metric,
                "history": state.history,
                "architecture": {"generator": self.trainer.generator.architecture,
                                 "discriminator": self.trainer.discriminator.architecture}}

    def read_progress(self, ckpt, state: LoopState) -> None:
        state.epoch, state.batch_in_epoch, state.step = (ckpt["epoch"], ckpt["batch_in_epoch"],
                                                         ckpt["step"])
        state.best.step, state.best.epoch = ckpt["best_step"], ckpt.get("best_epoch", -1)
        state.best.value = ckpt["best_mean_ssim"] if state.best.step >= 0 else None
        state.history = list(ckpt["history"])

    def check_resume(self, path: Path, ckpt) -> None:
        # keys a checkpoint predates (model.encoder_weights) had their default value
        saved_model = {**to_dict(GanModelConfig()), **ckpt.get("config", {}).get("model", {})}
        check_same_architecture(path, saved_model, to_dict(self.cfg.model),
                                what="model (config)")
        saved_select = ckpt.get("select_by", "mean_ssim")  # runs before it: mean SSIM
        if saved_select != self.select_by:
            raise CheckpointError(f"train.select_by changed since this checkpoint was written "
                                  f"({saved_select} -> {self.select_by}): the best checkpoint "
                                  "so far was chosen by the other figure; resume with "
                                  f"train.select_by={saved_select} or start a new run (another "
                                  "name)", path=path)
        saved_origin = ckpt.get("architecture", {}).get("generator", {}).get("encoder_source")
        other = provenance_mismatch(saved_origin,
                                    self.trainer.generator.architecture.get("encoder_source"))
        if other:
            log.warning("%s: the generator's encoder was %s", path, other)
        if saved_origin:  # the weights descend from the checkpoint's, and so does the record
            self.trainer.generator.architecture["encoder_source"] = saved_origin
        saved_batch = ckpt["config"]["train"]["batch_size"]
        if saved_batch != self.cfg.train.batch_size:
            log.warning("%s was trained with batch_size %d, resuming with %d: the position "
                        "inside the epoch is counted in batches, so some items are skipped or "
                        "repeated once", path, saved_batch, self.cfg.train.batch_size)

    # --- logs ------------------------------------------------------------------------------

    def history_row(self, state: LoopState, metrics) -> dict[str, Any]:
        return {**metrics, "step": state.step}

    def report(self, state: LoopState, row, improved: bool) -> None:
        """Rank 0: TensorBoard scalars and image grid, eval_history.json, one log line."""
        if not self.run.dist.is_main:
            return
        step, best = state.step, state.best
        self.run.scalars({k: v for k, v in row.items() if k != "step"}, step, "eval/")
        held = self.held_out
        rows = min(self.cfg.train.grid_rows, held.faces.shape[0])
        if rows and self.run.writer is not None:
            gen = self.trainer.generate(held.faces[:rows]).cpu()
            self.run.writer.add_image("samples/face_true_generated",
                                      image_grid(held.faces[:rows], held.mris[:rows], gen), step)
        atomic_write_json(self.run.run_dir / "eval_history.json", state.history)
        log.info("step %d: held-out mean SSIM %.4f, L2 %.5f (all-black %.5f); fakes: SSIM "
                 "%.4f (black %.4f, mean map %.4f), pixel AUC %.3f (mean map %.3f); face AUC "
                 "%.3f; best %s %.4f at step %d", step, row["mean_ssim"], row["l2"],
                 row["l2_black"], row["fake_ssim"], row["black_fake_ssim"],
                 row.get("mean_map_fake_ssim", math.nan), row["pixel_auc"],
                 row.get("mean_map_pixel_auc", math.nan), row["face_auc"],
                 best.metric, best.value, best.step)

    def after_step(self, state: LoopState, terms, batch) -> None:
        trainer, step = self.trainer, state.step
        if trainer.compile_seconds is not None and not self.compile_logged:
            self.compile_logged = True  # compile time apart: not in img/s
            log.info("step %d: torch.compile of G and D took %.1f s (first step; mode "
                     "%s, CUDA graphs %s)", step, trainer.compile_seconds,
                     trainer.compile_mode, "on" if trainer.cuda_graphs else "off")
            self.tick, self.tick_step = time.perf_counter(), step
            self.run.scalars({"perf/compile_seconds": trainer.compile_seconds}, step)
        for k, v in terms.items():
            self.sums[k] = self.sums[k] + v if k in self.sums else v.clone()
        self.n_summed += 1
        tc = self.cfg.train
        if not (tc.log_every and step % tc.log_every == 0):
            return
        means = {k: float(distributed.all_reduce_mean(v / self.n_summed))
                 for k, v in self.sums.items()}
        self.sums, self.n_summed = {}, 0
        now = time.perf_counter()
        ips = (step - self.tick_step) * tc.batch_size / max(now - self.tick, 1e-9)
        self.tick, self.tick_step = now, step
        if self.run.writer is not None:
            self.run.scalars(means, step, "loss/")
            self.run.scalars({"lr/generator": trainer.opt_g.param_groups[0]["lr"],
                              "lr/discriminator": trainer.opt_d.param_groups[0]["lr"],
                              "perf/images_per_s": ips}, step)
            log.info("step %d epoch %d: G %.4f (gan %.4f, pixel %.5f, ssim %.4f) D %.4f | "
                     "%.1f img/s", step, state.trained_epoch, means["G"], means["G_gan"],
                     means["G_pixel"], means["G_ssim"], means["D"], ips)

    def started(self, run: TrainingRun, state: LoopState) -> None:
        self.tick, self.tick_step = time.perf_counter(), state.step


def train_gan(cfg: GanConfig, *, resume: bool | str | Path | None = None,
              callbacks: Sequence[StepCallback] = ()) -> TrainResult:
    """Train MRI-GAN as configured; see the module docstring for what a run guarantees.

    ``resume`` as everywhere (:mod:`mrigan.loop`): ``True`` continues from
    ``<run>/checkpoints/last.pt`` when the run has one, a path from that checkpoint, ``False``
    starts fresh; ``None`` (default): ``train.resume`` of the config (true unless set), as
    the detector and realism trainers read it.
    ``callbacks`` run after every step with ``(trainer, step, loss_terms)``.
    Uses the process group of the caller when there is one (torchrun / ``distributed.setup``).
    """
    if not cfg.data.root:
        raise ConfigError("data.root is not set: point it at an MRI-DF folder (manifest.csv)")
    dist = distributed.info()
    tc = cfg.train
    if tc.batch_size % dist.world_size:
        raise ConfigError(f"train.batch_size {tc.batch_size} (global) is not divisible by the "
                         f"{dist.world_size} processes")
    seed_everything(tc.seed)
    trainer = GanTrainer(cfg)
    seed_everything(tc.seed + dist.rank)  # models are equal everywhere; noise differs per rank

    train_set = MriDfDataset(cfg.data.root, cfg.data.train_split, cfg.model.image_size)
    has_prior = getattr(trainer.generator, "has_prior", False)
    evaluates = dist.is_main and tc.eval_every > 0
    # the training fakes' mean MRI: the generator's prior and the held-out mean-map baseline
    mean_map = training_mean_map(train_set) if has_prior or evaluates else None
    if has_prior and mean_map is not None:  # without fakes the prior stays black; on resume
        trainer.generator.set_prior(mean_map.to(trainer.device))  # the checkpoint's replaces it
    run = TrainingRun(cfg.run_dir, cfg, fmt=CHECKPOINT_FORMAT, max_minutes=tc.max_minutes,
                      precision=trainer.precision)
    task = GanTask(cfg, trainer, train_set, run)
    if evaluates:
        val_set = MriDfDataset(cfg.data.root, cfg.data.val_split, cfg.model.image_size)
        task.held_out = HeldOut.from_dataset(val_set, cfg.data.eval_samples, tc.seed,
                                             mean_map=mean_map)
    cadence = Cadence(epochs=tc.epochs, max_steps=tc.max_steps, max_minutes=tc.max_minutes,
                      eval_every=tc.eval_every, checkpoint_every=tc.checkpoint_every,
                      final_eval=tc.eval_every > 0)
    steps = [(lambda task, step, terms, cb=cb: cb(trainer, step, terms)) for cb in callbacks]
    return fit(task, run, cadence, resume=tc.resume if resume is None else resume,
               callbacks=steps)
