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
  fixed held-out sample of faces into MRIs; their mean SSIM against the true MRIs (data range 1)
  picks ``best.pt``. ``last.pt`` is written every ``checkpoint_every`` steps and at the end.
* **Non-finite losses stop the run** with :class:`NonFiniteLossError`; nothing is saved after
  the bad step, so ``last.pt`` stays the last good state.
* **Augmentation** (``augment.enabled``, :mod:`mrigan.paired_augment`): training batches only,
  never the held-out sample; its randomness is a function of (seed, rank, step), so resume stays
  exact and the trainer's other randomness (dropout) is not shifted by it.
* **Logs**: TensorBoard scalars (every loss term, mean SSIM, lr, images/s) and an image grid
  (face | true MRI | generated MRI per row) under ``<run>/tb``; ``<run>/eval_history.json``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mrigan import __version__, distributed, perceptual
from mrigan.checkpoint import (
    CheckpointError,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
    seed_everything,
)
from mrigan.config import ConfigError, save_config, to_dict
from mrigan.device import autocast, resolve_device, use_channels_last
from mrigan.device import resolve_precision as device_precision
from mrigan.errors import MriganError
from mrigan.fileio import atomic_write_json
from mrigan.losses import LossConfig, discriminator_loss, generator_loss
from mrigan.models import define_discriminator, define_generator
from mrigan.mri_df_format import MriDfDataset, balanced_indices
from mrigan.paired_augment import PairedAugmentConfig, build_paired_augment, step_generator

log = logging.getLogger("mrigan.train")

CHECKPOINT_FORMAT = "mrigan-gan-checkpoint/1"


# --- configuration ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelConfig:
    generator: str = "mrigan"  # see mrigan.models.GENERATORS
    discriminator: str = "mrigan"  # see mrigan.models.DISCRIMINATORS
    image_size: int = 256
    ngf: int = 64  # generator base width
    ndf: int = 64  # discriminator base width
    dropout: float = 0.5

    def generator_kwargs(self) -> dict[str, Any]:
        return {"ngf": self.ngf, "dropout": self.dropout}


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    # pix2pix's "linear" policy: the lr falls linearly to 0 over the last ``decay_steps`` steps
    # of the run (0: constant lr, the paper). A function of the step alone, so resume is exact.
    decay_steps: int = 0


def lr_factor(step: int, total_steps: int, decay_steps: int) -> float:
    """Multiplier of the base lr for the step after ``step`` completed ones."""
    if decay_steps <= 0:
        return 1.0
    start = total_steps - decay_steps
    return 1.0 if step < start else max(0.0, (total_steps - step) / decay_steps)


@dataclass(frozen=True)
class DataConfig:
    root: str = ""  # an MRI-DF root (manifest.csv + PNGs)
    train_split: str = "train"
    val_split: str = "val"
    eval_samples: int = 64  # fixed held-out pairs (half fakes) for mean SSIM and best.pt
    num_workers: int = 0


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 100
    batch_size: int = 128  # global batch (all processes together)
    max_steps: int = 0  # stop after this many optimizer steps (0: run all epochs)
    max_minutes: float = 0.0  # stop after this much wall time (0: no limit); --resume continues
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # fp32 | bf16 | fp16 | auto (bf16/fp16 on CUDA; bf16 on CPUs with native bf16, else fp32)
    channels_last: str | bool = "auto"  # auto (CUDA only) | true | false
    log_every: int = 50
    eval_every: int = 500
    checkpoint_every: int = 1000
    grid_rows: int = 8  # rows of the TensorBoard image grid


@dataclass(frozen=True)
class GanConfig:
    """One MRI-GAN experiment; YAML files in ``configs/`` fill it (see ``mri_gan.yaml``)."""

    name: str = "mri_gan"
    out_dir: str = "runs"  # the run writes into <out_dir>/<name>/
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    # paired (face, MRI) augmentation of training batches only; off by default (the paper)
    augment: PairedAugmentConfig = field(default_factory=PairedAugmentConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name


class NonFiniteLossError(MriganError, RuntimeError):
    """A loss became NaN or infinite; the run stopped without saving the bad state."""


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    step: int
    epoch: int
    best_mean_ssim: float
    best_step: int
    last_checkpoint: Path | None
    best_checkpoint: Path | None
    last_eval: dict[str, float]


# --- the model pair and one optimisation step -------------------------------------------------


def resolve_precision(device: torch.device, precision: str) -> str:
    """``auto``: bf16 on CUDA (fp16 without bf16), bf16 on CPUs with native bf16, else fp32
    (see :func:`mrigan.device.resolve_precision`)."""
    return device_precision(device, precision)


def resolve_channels_last(device: torch.device, setting: str | bool) -> bool:
    if isinstance(setting, bool):
        return setting
    value = str(setting).lower()
    if value == "auto":
        return use_channels_last(device)
    if value in ("true", "yes", "1", "on"):
        return True
    if value in ("false", "no", "0", "off"):
        return False
    raise ValueError(f"train.channels_last must be auto, true or false, got {setting!r}")


class GanTrainer:
    """Generator + discriminator, their Adam optimizers and one training step.

    The loop (:func:`train_gan`) and the benchmark (``bench/train_gan.py``) both use
    :meth:`train_step`, so what is measured is what trains. Under DDP both models are wrapped;
    the generator step calls the *unwrapped* discriminator with frozen parameters, so no
    discriminator gradients are computed or all-reduced there.
    """

    def __init__(self, cfg: GanConfig, device: torch.device | str | None = None) -> None:
        self.cfg = cfg
        self.device = resolve_device(device if device is not None else cfg.train.device)
        self.precision = resolve_precision(self.device, cfg.train.precision)
        self.channels_last = resolve_channels_last(self.device, cfg.train.channels_last)
        m = cfg.model
        self.generator = define_generator(m.generator, m.image_size, **m.generator_kwargs())
        self.discriminator = define_discriminator(m.discriminator, ndf=m.ndf)
        layout = torch.channels_last if self.channels_last else torch.contiguous_format
        self.generator.to(self.device, memory_format=layout)
        self.discriminator.to(self.device, memory_format=layout)
        o = cfg.optim
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=o.lr, betas=(o.beta1, o.beta2))
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=o.lr,
                                      betas=(o.beta1, o.beta2))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.g = distributed.wrap_ddp(self.generator, self.device)
        self.d = distributed.wrap_ddp(self.discriminator, self.device)

    def set_lr(self, lr: float) -> None:
        for opt in (self.opt_g, self.opt_d):
            for group in opt.param_groups:
                group["lr"] = lr

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        layout = torch.channels_last if self.channels_last else torch.contiguous_format
        return x.to(self.device, non_blocking=True, memory_format=layout)

    def autocast(self):
        return autocast(self.device, self.precision)

    def train_step(self, face: torch.Tensor, mri: torch.Tensor) -> dict[str, torch.Tensor]:
        """One generator then one discriminator update (the paper's order) on a batch.

        ``face``/``mri`` are (N, 3, H, W) in [0, 1] on the trainer's device. Returns detached
        loss terms: ``G``, ``G_gan``, ``G_pixel``, ``G_ssim``, ``D``, ``D_real``, ``D_fake``.
        """
        self.generator.train()
        self.discriminator.train()
        # generator: fool the (frozen) discriminator and match the true MRI
        self.discriminator.requires_grad_(False)
        with self.autocast():
            fake = self.g(face)
            pred_fake = self.discriminator(fake, face)
        g = generator_loss(pred_fake, fake, mri, self.cfg.loss)
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler.scale(g["total"]).backward()
        self.scaler.step(self.opt_g)
        self.discriminator.requires_grad_(True)
        # discriminator on the true pair and on the (detached) generated pair; two forwards
        # measured ~4% faster on CPU than one forward of the concatenated batch
        fake = fake.detach()
        with self.autocast():
            pred_real = self.d(mri, face)
            pred_fake = self.d(fake, face)
        d = discriminator_loss(pred_real, pred_fake, self.cfg.loss)
        self.opt_d.zero_grad(set_to_none=True)
        self.scaler.scale(d["total"]).backward()
        self.scaler.step(self.opt_d)
        self.scaler.update()
        return {"G": g["total"].detach(), "G_gan": g["gan"].detach(),
                "G_pixel": g["pixel"].detach(), "G_ssim": g["ssim"].detach(),
                "D": d["total"].detach(), "D_real": d["real"].detach(),
                "D_fake": d["fake"].detach()}

    @torch.no_grad()
    def generate(self, faces: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
        """MRIs in [0, 1] for (N, 3, H, W) faces, generator in eval mode (no dropout), fp32
        whatever the training precision, so the held-out SSIM that picks ``best.pt`` does not
        depend on it."""
        was_training = self.generator.training
        self.generator.eval()
        try:
            outs = []
            for i in range(0, faces.shape[0], batch_size):
                outs.append(self.generator(self.to_device(faces[i:i + batch_size])).float())
            return torch.cat(outs).contiguous()
        finally:
            self.generator.train(was_training)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.state_dict(),
                "discriminator": self.discriminator.state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                "scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])


# --- held-out evaluation ---------------------------------------------------------------------


@dataclass(frozen=True)
class HeldOut:
    """A fixed held-out sample, loaded once: faces, true MRIs and labels as tensors."""

    faces: torch.Tensor
    mris: torch.Tensor
    labels: torch.Tensor

    @classmethod
    def from_dataset(cls, dataset, n: int, seed: int) -> HeldOut:

        order = balanced_indices(dataset.labels, epoch=0, seed=seed)
        seen = set(order)
        rest = [i for i in range(len(dataset)) if i not in seen]
        chosen = (order + rest)[:n]
        items = [dataset[i] for i in chosen]
        return cls(torch.stack([it["image"] for it in items]),
                   torch.stack([it["mri"] for it in items]),
                   torch.tensor([int(it["label"]) for it in items]))


def evaluate_generator(trainer: GanTrainer, held_out: HeldOut) -> dict[str, float]:
    """Mean SSIM (data range 1) and L2 of generated vs true MRIs on the held-out sample,
    with the all-black prediction's L2 and the mean generated MRI of fakes and of reals."""
    generated = trainer.generate(held_out.faces).cpu()
    true = held_out.mris
    ssim = perceptual.mean_ssim(generated, true, data_range=1.0)
    per_image = generated.flatten(1).mean(1)
    fakes, reals = held_out.labels == 1, held_out.labels == 0
    out = {"mean_ssim": float(ssim.mean()),
           "l2": float(((generated - true) ** 2).mean()),
           "l2_black": float((true ** 2).mean()),
           "mri_mean_fake": float(per_image[fakes].mean()) if fakes.any() else math.nan,
           "mri_mean_real": float(per_image[reals].mean()) if reals.any() else math.nan}
    return out


def image_grid(faces: torch.Tensor, true: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
    """(3, H', W') grid, one row per sample: face | true MRI | generated MRI."""
    from torchvision.utils import make_grid

    rows = torch.stack((faces, true, generated), 1).flatten(0, 1)
    return make_grid(rows.clamp(0, 1), nrow=3, padding=2, pad_value=1.0)


# --- the loop --------------------------------------------------------------------------------

StepCallback = Callable[[GanTrainer, int, dict[str, torch.Tensor]], None]


def epoch_batches(labels: Sequence[int], epoch: int, seed: int, batch_size: int) -> list[list[int]]:
    """The global batches of one balanced epoch (the last one may be smaller)."""

    order = balanced_indices(labels, epoch, seed)
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def _checkpoint_paths(run_dir: Path) -> tuple[Path, Path]:
    return run_dir / "checkpoints" / "last.pt", run_dir / "checkpoints" / "best.pt"


def _resume_path(cfg: GanConfig, resume: bool | str | Path | None) -> Path | None:
    if not resume:
        return None
    path = _checkpoint_paths(cfg.run_dir)[0] if resume is True else Path(resume)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint to resume from")
    return path


def _check_same_architecture(ckpt: dict, cfg: GanConfig, path: Path) -> None:
    saved = ckpt.get("config", {}).get("model", {})
    now = to_dict(cfg.model)
    diff = {k: (saved.get(k), v) for k, v in now.items() if saved.get(k) != v}
    if diff:
        raise ConfigError(f"{path}: checkpoint model config differs from this run's: "
                          f"{ {k: f'{a!r} -> {b!r}' for k, (a, b) in diff.items()} }")


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
        raise ValueError(f"train.batch_size {tc.batch_size} (global) is not divisible by the "
                         f"{dist.world_size} processes")
    seed_everything(tc.seed)
    trainer = GanTrainer(cfg)
    seed_everything(tc.seed + dist.rank)  # models are equal everywhere; noise differs per rank

    train_set = MriDfDataset(cfg.data.root, cfg.data.train_split, cfg.model.image_size)
    held_out = None
    if dist.is_main and tc.eval_every > 0:
        val_set = MriDfDataset(cfg.data.root, cfg.data.val_split, cfg.model.image_size)
        held_out = HeldOut.from_dataset(val_set, cfg.data.eval_samples, tc.seed)

    run_dir = cfg.run_dir
    last_path, best_path = _checkpoint_paths(run_dir)
    epoch, batch_in_epoch, step = 0, 0, 0
    best_ssim, best_step, history = -math.inf, -1, []
    ckpt_path = _resume_path(cfg, resume)
    if ckpt_path is not None:
        ckpt = load_checkpoint(ckpt_path, map_location=trainer.device)
        if ckpt.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{ckpt_path}: not an MRI-GAN training checkpoint")
        _check_same_architecture(ckpt, cfg, ckpt_path)
        trainer.load_state_dict(ckpt)
        saved_batch = ckpt["config"]["train"]["batch_size"]
        if saved_batch != tc.batch_size:
            log.warning("%s was trained with batch_size %d, resuming with %d: the position "
                        "inside the epoch is counted in batches, so some items are skipped or "
                        "repeated once", ckpt_path, saved_batch, tc.batch_size)
        epoch, batch_in_epoch, step = ckpt["epoch"], ckpt["batch_in_epoch"], ckpt["step"]
        best_ssim, best_step = ckpt["best_mean_ssim"], ckpt["best_step"]
        history = list(ckpt["history"])
        rng = ckpt["rng"]
        if len(rng) == dist.world_size:
            restore_rng_state(rng[dist.rank])
        else:
            log.warning("%s was written by %d processes, resuming with %d: RNG streams reseeded, "
                        "so dropout noise will differ from an uninterrupted run",
                        ckpt_path, len(rng), dist.world_size)
            seed_everything(tc.seed + 7919 * step + dist.rank)
        if dist.is_main:
            log.info("resumed from %s at step %d (epoch %d, batch %d)", ckpt_path, step, epoch,
                     batch_in_epoch)

    writer = None
    if dist.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run_dir / "tb"), purge_step=step if step else None)

    def checkpoint_state() -> dict[str, Any]:
        return {"format": CHECKPOINT_FORMAT, **trainer.state_dict(), "epoch": epoch,
                "batch_in_epoch": batch_in_epoch, "step": step, "best_mean_ssim": best_ssim,
                "best_step": best_step, "history": history,
                "rng": distributed.all_gather_object(capture_rng_state()),
                "world_size": dist.world_size, "config": to_dict(cfg),
                "architecture": {"generator": trainer.generator.architecture,
                                 "discriminator": trainer.discriminator.architecture},
                "mrigan_version": __version__}

    def save(paths: Sequence[Path]) -> None:
        state = checkpoint_state()  # collective: every rank calls it
        if dist.is_main:
            for p in paths:
                save_checkpoint(p, state)

    def run_eval() -> dict[str, float]:
        nonlocal best_ssim, best_step
        result = evaluate_generator(trainer, held_out)
        result["step"] = step
        history.append(result)
        improved = result["mean_ssim"] > best_ssim
        if improved:
            best_ssim, best_step = result["mean_ssim"], step
        writer.add_scalar("eval/mean_ssim", result["mean_ssim"], step)
        writer.add_scalar("eval/l2", result["l2"], step)
        writer.add_scalar("eval/l2_all_black", result["l2_black"], step)
        writer.add_scalar("eval/mri_mean_fake", result["mri_mean_fake"], step)
        writer.add_scalar("eval/mri_mean_real", result["mri_mean_real"], step)
        rows = min(tc.grid_rows, held_out.faces.shape[0])
        if rows:
            gen = trainer.generate(held_out.faces[:rows]).cpu()
            writer.add_image("samples/face_true_generated",
                             image_grid(held_out.faces[:rows], held_out.mris[:rows], gen), step)
        atomic_write_json(run_dir / "eval_history.json", history)
        log.info("step %d: held-out mean SSIM %.4f (best %.4f at step %d), L2 %.5f "
                 "(all-black %.5f)", step, result["mean_ssim"], best_ssim, best_step,
                 result["l2"], result["l2_black"])
        return result

    last_eval: dict[str, float] = history[-1] if history else {}
    last_eval_step = history[-1]["step"] if history else -1

    def evaluate_and_keep_best() -> None:
        """Collective: rank 0 evaluates, every rank learns the outcome and joins the save."""
        nonlocal best_ssim, best_step, last_eval, last_eval_step
        if dist.is_main:
            last_eval = run_eval()
        best_ssim, best_step, last_eval = distributed.broadcast_object(
            (best_ssim, best_step, last_eval))
        last_eval_step = step
        if best_step == step:
            save([best_path])

    sums: dict[str, torch.Tensor] = {}
    n_summed = 0
    tick, tick_step = time.perf_counter(), step
    finished = tc.max_steps and step >= tc.max_steps
    steps_per_epoch = len(epoch_batches(train_set.labels, 0, tc.seed, tc.batch_size))
    total_steps = tc.max_steps or tc.epochs * steps_per_epoch
    augment = build_paired_augment(cfg.augment, cfg.model.image_size)
    started = time.monotonic()
    out_of_time = False
    try:
        while epoch < tc.epochs and not finished:
            batches = epoch_batches(train_set.labels, epoch, tc.seed, tc.batch_size)
            shards = [distributed.shard_indices(b) for b in batches[batch_in_epoch:]]
            loader = torch.utils.data.DataLoader(
                train_set, batch_sampler=shards, num_workers=cfg.data.num_workers,
                pin_memory=trainer.device.type == "cuda",
                generator=torch.Generator().manual_seed(tc.seed + epoch))  # keeps global RNG
            for batch in loader:
                face, mri = trainer.to_device(batch["image"]), trainer.to_device(batch["mri"])
                if cfg.augment.enabled:
                    face, mri = augment(face, mri, step_generator(tc.seed, step, dist.rank))
                    face, mri = trainer.to_device(face), trainer.to_device(mri)  # layout
                if cfg.optim.decay_steps:
                    trainer.set_lr(cfg.optim.lr * lr_factor(step, total_steps,
                                                            cfg.optim.decay_steps))
                terms = trainer.train_step(face, mri)
                step += 1
                batch_in_epoch += 1
                bad = distributed.all_reduce_sum(
                    (~torch.isfinite(torch.stack(list(terms.values())))).any().float())
                if bad.item():
                    raise NonFiniteLossError(
                        f"step {step} (epoch {epoch}): non-finite loss "
                        f"{ {k: float(v) for k, v in terms.items()} }; training stopped. "
                        f"Last good checkpoint: {last_path if last_path.is_file() else 'none yet'}."
                        " Lower optim.lr, use train.precision=fp32, or check the data.")
                for k, v in terms.items():
                    sums[k] = sums[k] + v if k in sums else v.clone()
                n_summed += 1
                if tc.log_every and step % tc.log_every == 0:
                    means = {k: float(distributed.all_reduce_mean(v / n_summed))
                             for k, v in sums.items()}
                    sums, n_summed = {}, 0
                    now = time.perf_counter()
                    ips = (step - tick_step) * tc.batch_size / max(now - tick, 1e-9)
                    tick, tick_step = now, step
                    if writer is not None:
                        for k, v in means.items():
                            writer.add_scalar(f"loss/{k}", v, step)
                        writer.add_scalar("lr/generator", trainer.opt_g.param_groups[0]["lr"], step)
                        writer.add_scalar("lr/discriminator", trainer.opt_d.param_groups[0]["lr"],
                                          step)
                        writer.add_scalar("perf/images_per_s", ips, step)
                        log.info("step %d epoch %d: G %.4f (gan %.4f, pixel %.5f, ssim %.4f) "
                                 "D %.4f | %.1f img/s", step, epoch, means["G"], means["G_gan"],
                                 means["G_pixel"], means["G_ssim"], means["D"], ips)
                if tc.eval_every and step % tc.eval_every == 0:
                    evaluate_and_keep_best()
                if tc.checkpoint_every and step % tc.checkpoint_every == 0:
                    save([last_path])
                for callback in callbacks:
                    callback(trainer, step, terms)
                if tc.max_steps and step >= tc.max_steps:
                    finished = True
                    break
                if tc.max_minutes > 0 and distributed.broadcast_object(
                        time.monotonic() - started >= 60.0 * tc.max_minutes):  # rank 0 decides
                    finished = out_of_time = True
                    log.info("step %d: time budget of %.1f min used; stopping (resume continues "
                             "exactly from %s)", step, tc.max_minutes, last_path)
                    break
            else:
                epoch, batch_in_epoch = epoch + 1, 0
        # end of training: a final evaluation and checkpoint. Out of time, the checkpoint alone:
        # a resumed run then equals an uninterrupted one, evaluation history included.
        if tc.eval_every and last_eval_step != step and not out_of_time:
            evaluate_and_keep_best()
        save([last_path])
    finally:
        if writer is not None:
            writer.close()
    distributed.barrier()
    return TrainResult(run_dir=run_dir, step=step, epoch=epoch, best_mean_ssim=best_ssim,
                       best_step=best_step, last_checkpoint=last_path,
                       best_checkpoint=best_path if best_step >= 0 else None,
                       last_eval=last_eval)


def replace(cfg: GanConfig, **sections: dict[str, Any]) -> GanConfig:
    """``replace(cfg, train={"max_steps": 10})``: a copy with some fields of sections changed."""
    changes = {name: dataclasses.replace(getattr(cfg, name), **values) if isinstance(values, dict)
               else values for name, values in sections.items()}
    return dataclasses.replace(cfg, **changes)
