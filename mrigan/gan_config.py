"""The MRI-GAN experiment's typed config (``configs/mri_gan*.yaml``).

``GanConfig`` is what ``mrigan train-gan`` reads; :mod:`mrigan.train` trains it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from mrigan.config import Checked, ConfigError, bounds
from mrigan.fingerprint import added_later, recorded_as
from mrigan.loop import NonFiniteLossError  # noqa: F401  (re-exported: the GAN's error)
from mrigan.loop_config import RunFolder, StepSettings, task_field
from mrigan.losses import GanLossConfig
from mrigan.lr_schedules import linear_decay_factor
from mrigan.models import DISCRIMINATORS, GENERATORS
from mrigan.paired_augment import PairedAugmentConfig
from mrigan.perceptual import DEFAULT_METRIC, DISSIMILARITIES


@dataclass(frozen=True)
class GanModelConfig(Checked):
    generator: str = field(default="mrigan", metadata=bounds(registry=GENERATORS))
    discriminator: str = field(default="mrigan", metadata=bounds(registry=DISCRIMINATORS))
    image_size: int = 256
    ngf: int = 64  # generator base width
    ndf: int = 64  # discriminator base width
    dropout: float = 0.5
    # starting weights of the encoder of the unet-<encoder> generators (unet-mobilenet_v2,
    # unet-efficientnet-lite0): imagenet (the packaged file, mrigan.pretrained), a local
    # .safetensors/.pth, or "" (from scratch); ignored by the other generators
    encoder_weights: str = field(default="imagenet", metadata=added_later("imagenet"))
    # "prior + learned residual" (unet-<encoder> generators only; not in the paper): the MRI is
    # the training fakes' mean MRI plus the generator's learned residual
    mri_prior: bool = field(default=False, metadata=added_later(False))

    def generator_kwargs(self) -> dict[str, Any]:
        return {"ngf": self.ngf, "dropout": self.dropout,
                "encoder_weights": self.encoder_weights or None, "prior": self.mri_prior}


@dataclass(frozen=True)
class GanOptimConfig(Checked):
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    # pix2pix's "linear" policy: the lr falls linearly to 0 over the last ``decay_steps`` steps
    # of the run (0: constant lr, the paper). A function of the step alone, so resume is exact.
    decay_steps: int = 0
    # the discriminator's lr is ``lr * lr_d_factor`` (decayed alike): the generator /
    # discriminator balance (1: the paper, one lr for both; < 1 a slower discriminator)
    lr_d_factor: float = field(default=1.0, metadata={
        **bounds(exclusive_minimum=0.0, maximum=10.0), **added_later(1.0)})


#: multiplier of the base lr for the step after ``step`` completed ones (the loop's
#: :class:`mrigan.loop.LinearDecayLr` applies it)
lr_factor = linear_decay_factor


@dataclass(frozen=True)
class GanDataConfig(Checked):
    root: str = ""  # an MRI-DF root (manifest.csv + PNGs)
    train_split: str = "train"
    val_split: str = "val"
    eval_samples: int = 64  # fixed held-out pairs (half fakes) for mean SSIM and best.pt
    num_workers: int = 0
    # batches each worker loads ahead (num_workers > 0). One DataLoader iterator spans the whole
    # run (mrigan.train.RunBatchSampler), so workers start once, not once per epoch.
    prefetch_factor: int = field(default=4, metadata=bounds(minimum=1))
    # page-locked host batches for asynchronous copies: auto (CUDA only) | true | false
    pin_memory: str | bool = field(default="auto", metadata=bounds(choices=("auto", True, False)))
    # the perceptual metric of data.root's MRIs (a mrigan.perceptual.DISSIMILARITIES name): the
    # maps the generator learns to predict; recorded in checkpoints' config and in exported
    # sidecars (`mrigan train-gan` refuses an MRI-DF of another metric)
    mri_metric: str = field(default=DEFAULT_METRIC, metadata=added_later(DEFAULT_METRIC))

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mri_metric not in DISSIMILARITIES:
            raise ConfigError(f"data.mri_metric: unknown perceptual metric {self.mri_metric!r}; "
                              f"known: {', '.join(DISSIMILARITIES.names())}")


#: ``train.select_by`` values: the held-out figures that can pick ``best.pt`` (higher is better).
SELECT_BY = ("mean_ssim", "select", "face_auc", "pixel_auc", "fake_ssim")

#: ``train.compile_mode`` values (torch.compile's ``mode``).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune-no-cudagraphs", "max-autotune")
#: the modes that capture CUDA graphs on CUDA devices (torch._inductor.list_mode_options())
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")


@dataclass(frozen=True)
class GanTrainConfig(StepSettings):
    """The GAN's ``train:`` section: the shared loop settings (:mod:`mrigan.loop_config`:
    epochs, batch_size - the global batch, seed, device, precision, max_minutes, resume,
    max_steps, checkpoint_every, log_every) with the GAN's recipe defaults, and its own."""

    epochs: int = task_field(StepSettings, "epochs", 100)
    batch_size: int = task_field(StepSettings, "batch_size", 128)
    # the GAN spelled "no limit" / "not by steps" 0 before: its fingerprints keep that spelling
    max_steps: int | None = task_field(StepSettings, "max_steps",
                                       history=recorded_as(None, 0))
    checkpoint_every: int | None = task_field(StepSettings, "checkpoint_every", 1000,
                                              history=recorded_as(None, 0))
    log_every: int = task_field(StepSettings, "log_every", 50)
    # Speed levers (issue 14; ``auto`` is what measured fastest, see mrigan.gan_trainer):
    # channels_last: auto (off everywhere: on an H200 cl+bf16 ran slower than bf16) | true | false
    channels_last: str | bool = "auto"
    # Adam implementation: auto (fused where torch has it: CUDA and, torch >= 2.4, CPU; else
    # foreach) | fused | foreach | for_loop
    adam_impl: str = field(default="auto",
                           metadata=bounds(choices=("auto", "fused", "foreach", "for_loop")))
    # torch.backends.cudnn.benchmark: auto (on for CUDA) | true | false
    cudnn_benchmark: str | bool = field(default="auto",
                                        metadata=bounds(choices=("auto", True, False)))
    # torch.compile of G and D: ~1.4x the bf16 step on an H200 but ~26 s of compilation before
    # the first step (logged separately); off by default
    compile: bool = False
    # torch.compile mode (with compile: true): default | reduce-overhead (CUDA graphs: each
    # compiled forward/backward replayed as one graph launch; needs fixed shapes, a new batch
    # size records a new graph; on a CPU it compiles without graphs) | max-autotune-no-cudagraphs
    # | max-autotune (both autotune kernels: minutes more compilation). Not measured against
    # default yet (bench/train_gan.py variant ``cudagraphs``); single-process runs only.
    compile_mode: str = field(default="default", metadata=bounds(choices=COMPILE_MODES))
    eval_every: int = 500  # validate on the held-out pairs every N steps (0: never)
    grid_rows: int = 8  # rows of the TensorBoard image grid
    # the held-out figure that picks best.pt (mrigan.localization): mean_ssim (over fakes and
    # reals together: rewards black maps, kept as the default of existing runs) | select
    # ((face AUC + pixel AUC) / 2: a constant map cannot win it) | face_auc | pixel_auc | fake_ssim
    select_by: str = field(default="mean_ssim", metadata={**bounds(choices=SELECT_BY),
                                                         **added_later("mean_ssim")})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.compile_mode != "default" and not self.compile:
            raise ConfigError(f"train.compile_mode={self.compile_mode!r} needs train.compile=true "
                              "(the mode of torch.compile; without compile nothing is compiled)")


@dataclass(frozen=True)
class GanConfig(RunFolder):
    """One MRI-GAN experiment; YAML files in ``configs/`` fill it (see ``mri_gan.yaml``).
    Writes ``<out_dir>/<name>/`` (:class:`mrigan.loop_config.RunFolder`)."""

    name: str = task_field(RunFolder, "name", "mri_gan")
    model: GanModelConfig = field(default_factory=GanModelConfig)
    loss: GanLossConfig = field(default_factory=GanLossConfig)
    optim: GanOptimConfig = field(default_factory=GanOptimConfig)
    data: GanDataConfig = field(default_factory=GanDataConfig)
    train: GanTrainConfig = field(default_factory=GanTrainConfig)
    # paired (face, MRI) augmentation of training batches only; off by default (the paper)
    augment: PairedAugmentConfig = field(default_factory=PairedAugmentConfig)


def replace(cfg: GanConfig, **sections: dict[str, Any]) -> GanConfig:
    """``replace(cfg, train={"max_steps": 10})``: a copy with some fields of sections changed."""
    changes = {name: dataclasses.replace(getattr(cfg, name), **values) if isinstance(values, dict)
               else values for name, values in sections.items()}
    return dataclasses.replace(cfg, **changes)
