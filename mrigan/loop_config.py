"""The config sections every training task shares, each field's meaning written once.

The GAN (:mod:`mrigan.gan_config`), the detectors (``detectors.config``) and the realism
models and DA-CLIP (``detectors.realism.config``) all train through :func:`mrigan.loop.fit`;
the settings that feed its loop used to be declared three times, with diverging defaults and
spellings (``max_steps: 0`` ran all epochs in the GAN, ``None`` in the detectors;
``checkpoint_every`` 0 vs None for "not by steps"). They are declared here once:

* :class:`RunSettings` - what every task's ``train:`` section has: ``epochs``,
  ``batch_size``, ``seed``, ``device``, ``precision``, ``max_minutes``, ``resume``;
* :class:`StepSettings` (a :class:`RunSettings`) - the tasks counted in optimizer steps that
  also checkpoint by steps (GAN, detectors): ``max_steps``, ``checkpoint_every``,
  ``log_every``. Realism trains whole epochs (a checkpoint after each, ``early_stopping``) and
  does not have them;
* :class:`RunFolder` - the top of every task's config: the run's ``name`` and ``out_dir``
  (outputs in ``<out_dir>/<name>/``).

**Design: inheritance, not nesting.** A task's train section *derives* from its shared section
(``class GanTrainConfig(StepSettings)``), so YAML keys stay flat and unchanged
(``train: {max_steps: 10}``): every shipped ``configs/*.yaml``, every checkpoint's stored
config and every test's config keep loading. A nested ``train: {loop: {...}}`` section would
have moved keys and broken all of those. Each field's type, bounds (``bounds`` metadata,
checked from YAML and when built directly: the classes are :class:`~mrigan.config.Checked`),
comment and fingerprint role (:mod:`mrigan.fingerprint`) are stated once, here.

**One meaning per field name** (tests/mrigan/test_loop_config.py introspects the task
sections and holds them to it):

* ``max_steps``: stop after this many optimizer steps; ``None``: no step limit (all
  ``epochs``). ``0`` - the GAN's spelling before - is read as ``None`` at load, silently:
  old YAML and checkpoints mean what they meant.
* ``checkpoint_every``: also write ``last.pt`` every N optimizer steps; ``None``: not by steps
  (``0``, the GAN's "off" before, is read as ``None``). Every task also writes ``last.pt`` at
  the end of the run and at a time-budget stop; the detectors after every epoch too.
* ``log_every``: optimizer steps between training-loss logs (TensorBoard); ``0``: none.
* ``max_minutes``: wall-time budget; ``0``: none. The run stops with ``last.pt``; a rerun
  resumes. Where it is checked (every step, or after each epoch for realism) is the task's.
* ``resume``: ``True`` continues from ``checkpoints/last.pt`` when the run has one (every
  task's default, :mod:`mrigan.loop`); ``False`` starts fresh.

A field's default is one default, except the task's *recipe* (:data:`TASK_DEFAULTS`: how long
it trains, its batch, its log and checkpoint cadence), which a task states with
:func:`task_field`: the shared type, bounds, comment and fingerprint role, the task's default.

**Fingerprints unchanged.** The settings fingerprints of runs, repeats and benchmark stages
(:mod:`mrigan.fingerprint`) are what they were before these sections: the GAN records its
``None`` of ``max_steps`` / ``checkpoint_every`` as ``0`` (``recorded_as``), the spelling its
fingerprints had; ``max_minutes`` and ``log_every`` are runtime settings in every task, as
the detectors' and realism's were (the GAN's only fingerprint, the benchmark stage's, keeps
runtime settings, so it is unchanged too). A detector config that wrote ``max_steps: 0`` or
``checkpoint_every: 0`` explicitly now records ``None``; a series or stage made with it is
refused naming ``train.max_steps (0 -> None)`` (no shipped config does).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mrigan.config import RUN_NAME, Checked, bounds
from mrigan.fingerprint import not_shaping, runtime

#: The shared fields whose default is the task's recipe (stated with :func:`task_field`);
#: every other shared field has one default everywhere.
TASK_DEFAULTS = ("epochs", "batch_size", "checkpoint_every", "log_every", "name")

#: Shared fields whose ``0`` is read as ``None`` (the same meaning: "no limit", "not by steps").
ZERO_IS_NONE = ("max_steps", "checkpoint_every")


@dataclass(frozen=True)
class RunSettings(Checked):
    """The ``train:`` settings of every task."""

    # passes over the training set: the run's length (and of an epoch-long lr schedule)
    epochs: int = field(default=10, metadata=bounds(minimum=0))
    # samples per optimizer step, all processes together (realism: per micro-batch of
    # train.accumulation)
    batch_size: int = field(default=32, metadata=bounds(minimum=1))
    seed: int = field(default=0, metadata=bounds(minimum=0))  # every random draw of the run
    # auto (CUDA if present, else CPU) | cpu | cuda | cuda:N | mps (mrigan.device)
    device: str = "auto"
    # fp32 | bf16 | fp16 | auto (bf16/fp16 on CUDA; bf16 on CPUs with native bf16, else fp32);
    # recorded in checkpoints, a resumed auto run keeps the recorded one
    precision: str = field(default="auto",
                           metadata=bounds(choices=("auto", "fp32", "bf16", "fp16")))
    # wall-time budget in minutes (0: none): the run stops with last.pt, a rerun resumes
    max_minutes: float = field(default=0.0, metadata={**bounds(minimum=0), **runtime()})
    # continue from <run>/checkpoints/last.pt when it exists (false: start fresh)
    resume: bool = field(default=True, metadata=not_shaping())


@dataclass(frozen=True)
class StepSettings(RunSettings):
    """:class:`RunSettings` plus the step limit and step cadences (GAN, detectors)."""

    # stop after this many optimizer steps (None: no limit, all epochs; 0 is read as None)
    max_steps: int | None = field(default=None, metadata=bounds(minimum=0))
    # also write last.pt every N optimizer steps (None: not by steps; 0 is read as None)
    checkpoint_every: int | None = field(default=None, metadata=bounds(minimum=0))
    # optimizer steps between training-loss logs / TensorBoard scalars (0: none)
    log_every: int = field(default=10, metadata={**bounds(minimum=0), **runtime()})

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ZERO_IS_NONE:  # the older "0: off" spelling, one meaning now
            if getattr(self, name) == 0:
                object.__setattr__(self, name, None)


@dataclass(frozen=True)
class RunFolder(Checked):
    """The top of a task's config: outputs go to ``<out_dir>/<name>/``."""

    # the run's folder name under out_dir (one folder, never a path out of it)
    name: str = field(default="run", metadata={**RUN_NAME, **not_shaping()})
    out_dir: str = field(default="runs", metadata=not_shaping())

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name


def task_field(section: type, name: str, default: Any = dataclasses.MISSING, *,
               history: dict[str, Any] | None = None) -> Any:
    """The shared field ``name`` of ``section`` as a task's section restates it: the same
    bounds, comment and fingerprint role, the task's ``default`` (a :data:`TASK_DEFAULTS`
    field) and ``history`` metadata (how the task spelled it before:
    :func:`mrigan.fingerprint.recorded_as`)."""
    shared = {f.name: f for f in dataclasses.fields(section)}[name]
    if default is dataclasses.MISSING:
        default = shared.default
    elif name not in TASK_DEFAULTS:
        raise TypeError(f"{section.__name__}.{name} has one default for every task")
    return field(default=default, metadata={**shared.metadata, **(history or {})})


__all__ = ["TASK_DEFAULTS", "ZERO_IS_NONE", "RunFolder", "RunSettings", "StepSettings",
           "task_field"]
