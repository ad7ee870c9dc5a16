"""The MRI-GAN model pair, its optimizers and one training step; held-out evaluation.

:class:`GanTrainer` is the GAN's :class:`mrigan.loop.TrainerPlugin`: the loop
(:func:`mrigan.train.train_gan`) and the benchmark (``bench/train_gan.py``) both use
:meth:`GanTrainer.train_step`, so what is measured is what trains.

Speed levers (``train.*`` keys; ``auto`` is the winner measured on an NVIDIA H200 with
``bench/train_gan.py``, issue 14; batch 64, 256 px, vs a textbook pix2pix step):

* ``precision: auto``: bf16 autocast on CUDA (1.27x-1.37x); fp32 on CPUs without native bf16.
* ``channels_last: auto`` is **off** everywhere: channels_last measured 0.88x in fp32 and
  ``cl+bf16`` 1.03x, slower than bf16 alone. ``true`` still selects it.
* ``adam_impl: auto``: fused Adam wherever torch has it (+2% over foreach on the H200; on a CPU
  the Adam update itself ran 4.5x faster fused than foreach, see :func:`mrigan.device.adam_kwargs`),
  else foreach.
* ``cudnn_benchmark: auto``: on for CUDA (fixed shapes: cuDNN picks the fastest algorithms).
* ``compile: false``: ``true`` runs G and D through ``torch.compile`` (1.89x with bf16 + fused,
  vs 1.39x without); compilation (~26 s there) happens in the first step, which
  :attr:`GanTrainer.compile_seconds` records and the loop logs apart from img/s.
* ``compile_mode: default``: ``reduce-overhead`` (or ``max-autotune``) adds CUDA graphs on
  CUDA: each compiled forward and backward of G and D is replayed as one recorded graph, which
  removes the per-kernel launch cost (not measured yet: ``bench/train_gan.py`` variant
  ``cudagraphs``). What the step does for it, following torch's CUDA graph trees docs:
  ``torch.compiler.cudagraph_mark_step_begin()`` at the start of every step (outputs of the
  previous step's graphs may then be overwritten: the step returns loss terms computed by
  eager code outside the graphs, never a graph output, and nothing keeps the generated batch
  across steps); the optimizers, the loss and the GradScaler stay eager, outside the graphs
  (parameters are updated in place, so their addresses stay fixed); gradients are set to
  ``None`` before each backward, so a gradient tensor of the previous step is never read. The
  first calls run without graphs (warm-up), the next records them, so the first ~3 steps are
  slow; a batch of another size (a last, smaller batch of an epoch) records another graph.
  Single-process only: under torchrun a CUDA graph mode is a ConfigError (untested with DDP).
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass
from typing import Any

import torch

from mrigan import distributed, perceptual
from mrigan.config import ConfigError
from mrigan.device import adam_kwargs, autocast, resolve_device, resolve_switch, set_cudnn_benchmark
from mrigan.device import resolve_precision as device_precision
from mrigan.gan_config import CUDA_GRAPH_MODES, GanConfig
from mrigan.localization import baseline_figures, localization_figures, mean_fake_map
from mrigan.losses import discriminator_loss, generator_loss
from mrigan.models import define_discriminator, define_generator
from mrigan.mri_df_format import balanced_indices


def resolve_precision(device: torch.device, precision: str) -> str:
    """The GAN's training precision. ``auto``: bf16 on CUDA (fp16 without bf16), bf16 on CPUs
    with native bf16, else fp32 (:func:`mrigan.device.resolve_precision`, job ``training``)."""
    return device_precision(device, precision, job="training")


def resolve_channels_last(device: torch.device, setting: str | bool) -> bool:
    """``auto`` is off on every device for the GAN (module doc: measured slower on an H200)."""
    return resolve_switch(setting, False, "train.channels_last")


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
        self.adam_kwargs = adam_kwargs(self.device, cfg.train.adam_impl)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=o.lr, betas=(o.beta1, o.beta2),
                                      **self.adam_kwargs)
        self.lr_d_factor = o.lr_d_factor
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=o.lr * o.lr_d_factor,
                                      betas=(o.beta1, o.beta2), **self.adam_kwargs)
        self.set_precision(self.precision)
        self.cudnn_benchmark = set_cudnn_benchmark(self.device, cfg.train.cudnn_benchmark)
        self.g = distributed.wrap_ddp(self.generator, self.device)
        self.d = distributed.wrap_ddp(self.discriminator, self.device)
        # the generator step's frozen discriminator: the unwrapped module (no DDP all-reduce)
        self.d_frozen = self.discriminator
        self.compiled = bool(cfg.train.compile)
        self.compile_mode = cfg.train.compile_mode
        #: whether the compiled models run as CUDA graphs (compile_mode reduce-overhead on CUDA)
        self.cuda_graphs = (self.compiled and self.compile_mode in CUDA_GRAPH_MODES
                            and self.device.type == "cuda")
        if self.cuda_graphs and distributed.is_distributed():
            raise ConfigError(f"train.compile_mode {self.compile_mode!r} (CUDA graphs) is not "
                              "supported under torchrun (DDP's gradient all-reduce inside "
                              "captured graphs is untested); use compile_mode default")
        #: seconds of the first train_step when compiled (compilation dominates it), else None
        self.compile_seconds: float | None = None
        if self.compiled:
            # static shapes: a new batch size (an epoch's last batch, the bench's probe) is one
            # more static graph; torch's automatic dynamic shapes would otherwise recompile
            # with a symbolic batch size at the second size seen and use that graph for every
            # later step
            kw = {"dynamic": False}
            if self.compile_mode != "default":
                kw["mode"] = self.compile_mode
            self.g, self.d = torch.compile(self.g, **kw), torch.compile(self.d, **kw)
            self.d_frozen = torch.compile(self.discriminator, **kw)

    def set_precision(self, precision: str) -> None:
        """Train in ``precision`` (resolved: fp32 | bf16 | fp16) from now on; a resumed run
        keeps the one its checkpoint recorded (:meth:`mrigan.loop.TrainingRun.resume_precision`).
        Call before loading a checkpoint: fp16 brings a gradient scaler, whose state it holds."""
        self.precision = precision
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=precision == "fp16")

    def set_lr(self, lr: float) -> None:
        """The generator's lr; the discriminator's is ``lr * optim.lr_d_factor``."""
        for opt, factor in ((self.opt_g, 1.0), (self.opt_d, self.lr_d_factor)):
            for group in opt.param_groups:
                group["lr"] = lr * factor

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
        if self.compiled and self.compile_seconds is None:
            start = time.perf_counter()
            terms = self._train_step(face, mri)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.compile_seconds = time.perf_counter() - start
            return terms
        return self._train_step(face, mri)

    def _train_step(self, face: torch.Tensor, mri: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.cuda_graphs:  # a new iteration: the previous step's graph outputs may be reused
            torch.compiler.cudagraph_mark_step_begin()
        self.generator.train()
        self.discriminator.train()
        # generator: fool the (frozen) discriminator and match the true MRI
        self.discriminator.requires_grad_(False)
        with self.autocast():
            fake = self.g(face)
            pred_fake = self.d_frozen(fake, face)
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
    """A fixed held-out sample, loaded once: faces, true MRIs and labels as tensors, and the
    mean true MRI of the training fakes (the mean-map baseline, :mod:`mrigan.localization`)."""

    faces: torch.Tensor
    mris: torch.Tensor
    labels: torch.Tensor
    mean_map: torch.Tensor | None = None

    @functools.cached_property
    def baselines(self) -> dict[str, float]:
        """The all-black and mean-map figures of this sample (the same at every evaluation)."""
        return baseline_figures(self.mris, self.labels, self.mean_map)

    @classmethod
    def from_dataset(cls, dataset, n: int, seed: int,
                     mean_map: torch.Tensor | None = None) -> HeldOut:

        order = balanced_indices(dataset.labels, epoch=0, seed=seed)
        seen = set(order)
        rest = [i for i in range(len(dataset)) if i not in seen]
        chosen = (order + rest)[:n]
        items = [dataset[i] for i in chosen]
        return cls(torch.stack([it["image"] for it in items]),
                   torch.stack([it["mri"] for it in items]),
                   torch.tensor([int(it["label"]) for it in items]), mean_map)


def training_mean_map(dataset, limit: int = 512) -> torch.Tensor | None:
    """The mean true MRI of (at most ``limit``, evenly spaced) training fakes: the mean-map
    baseline of the held-out figures; ``None`` without fakes."""
    fakes = [i for i, label in enumerate(dataset.labels) if int(label) == 1]
    if not fakes:
        return None
    step = max(1, len(fakes) // limit)
    chosen = fakes[::step][:limit]
    return mean_fake_map((dataset[i]["mri"] for i in chosen), [1] * len(chosen))


def evaluate_generator(trainer: GanTrainer, held_out: HeldOut) -> dict[str, float]:
    """Mean SSIM (data range 1) and L2 of generated vs true MRIs on the held-out sample,
    with the all-black prediction's L2 and the mean generated MRI of fakes and of reals, and
    the localization figures beside the all-black and mean-map baselines
    (:func:`mrigan.localization.localization_figures`)."""
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
    out.update(localization_figures(generated, true, held_out.labels,
                                    baselines=held_out.baselines))
    return out


def image_grid(faces: torch.Tensor, true: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
    """(3, H', W') grid, one row per sample: face | true MRI | generated MRI."""
    from torchvision.utils import make_grid

    rows = torch.stack((faces, true, generated), 1).flatten(0, 1)
    return make_grid(rows.clamp(0, 1), nrow=3, padding=2, pad_value=1.0)

