"""MRI-GAN training: the loop, balanced epochs, checkpoints and exact resume, DDP, logging.

Python API::

    from mrigan.config import load_config
    from mrigan.train import GanConfig, train_gan
    cfg = load_config(GanConfig, "configs/mri_gan_cpu.yaml", ["data.root=/data/mri_df"])
    result = train_gan(cfg)                      # or train_gan(cfg, resume=True)
    print(result.best_mean_ssim, result.best_checkpoint)

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
    TrainResult,
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
from mrigan.loop import BestTracker, TrainingRun, check_same_architecture
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


class _GanRun:
    """The GAN's progress (epoch, position, step, best SSIM, history) around a TrainingRun."""

    def __init__(self, cfg: GanConfig, trainer: GanTrainer, run: TrainingRun) -> None:
        self.cfg, self.trainer, self.run = cfg, trainer, run
        self.epoch = self.batch_in_epoch = self.step = 0
        self.best = BestTracker(cfg.train.select_by, higher_is_better=True, value=-math.inf)
        self.history: list[dict[str, float]] = []
        self.held_out: HeldOut | None = None
        self.last_eval: dict[str, float] = {}
        self.last_eval_step = -1
        self.sums: dict[str, torch.Tensor] = {}
        self.n_summed = 0
        self.tick, self.tick_step = time.perf_counter(), 0
        self.compile_logged = False

    # --- checkpoints -----------------------------------------------------------------------

    def progress(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch, "step": self.step,
                "best_mean_ssim": self.best.value, "best_step": self.best.step,
                "select_by": self.best.metric,
                "history": self.history,
                "architecture": {"generator": self.trainer.generator.architecture,
                                 "discriminator": self.trainer.discriminator.architecture}}

    def save(self, last: bool = True, best: bool = False) -> None:
        self.run.save(self.trainer, self.progress(), last=last, best=best)

    def resume(self, resume: bool | str | Path | None) -> None:
        found = self.run.resume(resume, map_location=self.trainer.device)
        if found is None:
            return
        path, ckpt = found
        # keys a checkpoint predates (model.encoder_weights) had their default value
        saved_model = {**to_dict(GanModelConfig()), **ckpt.get("config", {}).get("model", {})}
        check_same_architecture(path, saved_model, to_dict(self.cfg.model),
                                what="model (config)")
        self.trainer.set_precision(self.run.resume_precision(path, ckpt,
                                                             self.cfg.train.precision))
        saved_select = ckpt.get("select_by", "mean_ssim")  # runs before it: mean SSIM
        if saved_select != self.best.metric:
            raise CheckpointError(f"train.select_by changed since this checkpoint was written "
                                  f"({saved_select} -> {self.best.metric}): the best checkpoint "
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
        try:
            self.trainer.load_state_dict(ckpt)
        except (KeyError, RuntimeError) as exc:
            raise CheckpointError(f"weights do not fit this run's models ({exc})".split("\n")[0],
                                  path=path) from exc
        tc = self.cfg.train
        saved_batch = ckpt["config"]["train"]["batch_size"]
        if saved_batch != tc.batch_size:
            log.warning("%s was trained with batch_size %d, resuming with %d: the position "
                        "inside the epoch is counted in batches, so some items are skipped or "
                        "repeated once", path, saved_batch, tc.batch_size)
        self.epoch, self.batch_in_epoch, self.step = (ckpt["epoch"], ckpt["batch_in_epoch"],
                                                      ckpt["step"])
        self.best.load_state_dict({"value": ckpt["best_mean_ssim"], "step": ckpt["best_step"]})
        self.history = list(ckpt["history"])
        if self.history:
            self.last_eval, self.last_eval_step = self.history[-1], self.history[-1]["step"]
        if not self.run.restore_rng(ckpt, reseed=tc.seed + 7919 * self.step):
            log.warning("%s was written by %d processes, resuming with %d: RNG streams reseeded, "
                        "so dropout noise will differ from an uninterrupted run",
                        path, len(ckpt["rng"]), self.run.dist.world_size)
        if self.run.dist.is_main:
            log.info("resumed from %s at step %d (epoch %d, batch %d)", path, self.step,
                     self.epoch, self.batch_in_epoch)

    # --- evaluation and logs ---------------------------------------------------------------

    def _evaluate_main(self) -> dict[str, float]:
        """Rank 0: held-out SSIM, TensorBoard scalars and image grid, eval_history.json."""
        result = evaluate_generator(self.trainer, self.held_out)
        result["step"] = self.step
        self.history.append(result)
        self.best.update(result[self.best.metric], self.step)
        self.run.scalars({k: v for k, v in result.items() if k != "step"}, self.step, "eval/")
        held = self.held_out
        rows = min(self.cfg.train.grid_rows, held.faces.shape[0])
        if rows and self.run.writer is not None:
            gen = self.trainer.generate(held.faces[:rows]).cpu()
            self.run.writer.add_image("samples/face_true_generated",
                                      image_grid(held.faces[:rows], held.mris[:rows], gen),
                                      self.step)
        atomic_write_json(self.run.run_dir / "eval_history.json", self.history)
        log.info("step %d: held-out mean SSIM %.4f, L2 %.5f (all-black %.5f); fakes: SSIM "
                 "%.4f (black %.4f, mean map %.4f), pixel AUC %.3f (mean map %.3f); face AUC "
                 "%.3f; best %s %.4f at step %d", self.step, result["mean_ssim"], result["l2"],
                 result["l2_black"], result["fake_ssim"], result["black_fake_ssim"],
                 result.get("mean_map_fake_ssim", math.nan), result["pixel_auc"],
                 result.get("mean_map_pixel_auc", math.nan), result["face_auc"],
                 self.best.metric, self.best.value, self.best.step)
        return result

    def evaluate_and_keep_best(self) -> None:
        """Collective: rank 0 evaluates, every rank learns the outcome and joins the save."""
        if self.run.dist.is_main:
            self.last_eval = self._evaluate_main()
        self.best.value, self.best.step, self.last_eval = distributed.broadcast_object(
            (self.best.value, self.best.step, self.last_eval))
        self.last_eval_step = self.step
        if self.best.step == self.step:
            self.save(last=False, best=True)

    def log_terms(self, terms: dict[str, torch.Tensor]) -> None:
        for k, v in terms.items():
            self.sums[k] = self.sums[k] + v if k in self.sums else v.clone()
        self.n_summed += 1
        tc = self.cfg.train
        if not (tc.log_every and self.step % tc.log_every == 0):
            return
        means = {k: float(distributed.all_reduce_mean(v / self.n_summed))
                 for k, v in self.sums.items()}
        self.sums, self.n_summed = {}, 0
        now = time.perf_counter()
        ips = (self.step - self.tick_step) * tc.batch_size / max(now - self.tick, 1e-9)
        self.tick, self.tick_step = now, self.step
        if self.run.writer is not None:
            self.run.scalars(means, self.step, "loss/")
            self.run.scalars({"lr/generator": self.trainer.opt_g.param_groups[0]["lr"],
                              "lr/discriminator": self.trainer.opt_d.param_groups[0]["lr"],
                              "perf/images_per_s": ips}, self.step)
            log.info("step %d epoch %d: G %.4f (gan %.4f, pixel %.5f, ssim %.4f) D %.4f | "
                     "%.1f img/s", self.step, self.epoch, means["G"], means["G_gan"],
                     means["G_pixel"], means["G_ssim"], means["D"], ips)

    # --- the loop --------------------------------------------------------------------------

    def fit(self, train_set: MriDfDataset, callbacks: Sequence[StepCallback]) -> None:
        cfg, tc, trainer = self.cfg, self.cfg.train, self.trainer
        rank = self.run.dist.rank
        steps_per_epoch = len(epoch_batches(train_set.labels, 0, tc.seed, tc.batch_size))
        total_steps = tc.max_steps or tc.epochs * steps_per_epoch
        augment = build_paired_augment(cfg.augment, cfg.model.image_size)
        self.tick, self.tick_step = time.perf_counter(), self.step
        finished = bool(tc.max_steps and self.step >= tc.max_steps)
        out_of_time = False
        if not finished and self.epoch < tc.epochs:
            sampler = RunBatchSampler(train_set.labels, tc.seed, tc.batch_size, tc.epochs,
                                      self.epoch, self.batch_in_epoch)
            loader = make_loader(train_set, sampler, cfg.data, trainer.device,
                                 tc.seed + self.epoch)
            for after, batch in zip(sampler.positions(), loader, strict=True):
                face, mri = trainer.to_device(batch["image"]), trainer.to_device(batch["mri"])
                if cfg.augment.enabled:
                    face, mri = augment(face, mri, step_generator(tc.seed, self.step, rank))
                    face, mri = trainer.to_device(face), trainer.to_device(mri)  # layout
                if cfg.optim.decay_steps:
                    trainer.set_lr(cfg.optim.lr * lr_factor(self.step, total_steps,
                                                            cfg.optim.decay_steps))
                terms = trainer.train_step(face, mri)
                self.step += 1
                if trainer.compile_seconds is not None and not self.compile_logged:
                    self.compile_logged = True  # compile time apart: not in img/s
                    log.info("step %d: torch.compile of G and D took %.1f s (first step; mode "
                             "%s, CUDA graphs %s)", self.step, trainer.compile_seconds,
                             trainer.compile_mode, "on" if trainer.cuda_graphs else "off")
                    self.tick, self.tick_step = time.perf_counter(), self.step
                    self.run.scalars({"perf/compile_seconds": trainer.compile_seconds}, self.step)
                self.run.check_finite(terms, f"step {self.step} (epoch {self.epoch})",
                                      NonFiniteLossError, "Lower optim.lr, use "
                                      "train.precision=fp32, or check the data.")
                self.log_terms(terms)
                self.epoch, self.batch_in_epoch = after  # where a checkpoint resumes from
                if tc.eval_every and self.step % tc.eval_every == 0:
                    self.evaluate_and_keep_best()
                if tc.checkpoint_every and self.step % tc.checkpoint_every == 0:
                    self.save()
                for callback in callbacks:
                    callback(trainer, self.step, terms)
                if tc.max_steps and self.step >= tc.max_steps:
                    finished = True
                    break
                if self.run.out_of_time():  # rank 0 decides
                    finished = out_of_time = True
                    log.info("step %d: time budget of %.1f min used; stopping (resume continues "
                             "exactly from %s)", self.step, tc.max_minutes, self.run.last_path)
                    break
            del loader  # stops the workers
        # end of training: a final evaluation and checkpoint. Out of time, the checkpoint alone:
        # a resumed run then equals an uninterrupted one, evaluation history included.
        if tc.eval_every and self.last_eval_step != self.step and not out_of_time:
            self.evaluate_and_keep_best()
        self.save()


def train_gan(cfg: GanConfig, *, resume: bool | str | Path | None = None,
              callbacks: Sequence[StepCallback] = ()) -> TrainResult:
    """Train MRI-GAN as configured; see the module docstring for what a run guarantees.

    ``resume``: ``True`` for ``<run>/checkpoints/last.pt``, or a checkpoint path.
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
    state = _GanRun(cfg, trainer, run)
    if evaluates:
        val_set = MriDfDataset(cfg.data.root, cfg.data.val_split, cfg.model.image_size)
        state.held_out = HeldOut.from_dataset(val_set, cfg.data.eval_samples, tc.seed,
                                              mean_map=mean_map)
    state.resume(resume)
    with run.open(purge_step=state.step):
        state.fit(train_set, callbacks)
    distributed.barrier()
    best = state.best
    return TrainResult(run_dir=cfg.run_dir, step=state.step, epoch=state.epoch,
                       best_mean_ssim=best.value, best_step=best.step,
                       last_checkpoint=run.last_path,
                       best_checkpoint=run.best_path if best.step >= 0 else None,
                       last_eval=state.last_eval, precision=trainer.precision,
                       select_by=best.metric)
