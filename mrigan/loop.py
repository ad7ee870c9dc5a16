"""The one training-loop skeleton that the GAN, detector and realism trainers plug into.

In the spirit of pix2pix's ``BaseModel`` contract and DeepfakeBench's single trainer, what every
trainer needs around its own optimisation step is written here once:

* the **run folder** ``<out_dir>/<name>/`` with the resolved ``config.yaml``, created by rank 0;
  orphan ``*.tmp`` files that a killed atomic save left behind are removed at the start;
* **checkpoints** ``checkpoints/last.pt`` and ``best.pt``, written atomically
  (:func:`mrigan.checkpoint.save_checkpoint`) by rank 0, with every rank's RNG states, the format
  tag, the config and the trainer's own ``state_dict()`` (its :class:`TrainerPlugin` part);
* **exact resume**: :meth:`TrainingRun.resume` reads ``last.pt`` (or a given file) and turns every
  way it can be unusable (missing, zero bytes, truncated, corrupt, another kind of checkpoint,
  another architecture) into one :class:`~mrigan.checkpoint.CheckpointError` naming the file and,
  when it exists, offering ``best.pt``; :meth:`TrainingRun.restore_rng` puts back this rank's RNG;
* the **TensorBoard** writer (rank 0 only, ``None`` elsewhere);
* the **non-finite stop**: :meth:`TrainingRun.check_finite` raises the trainer's error type on
  every rank at once, before anything of the bad step is saved, so ``last.pt`` stays good;
* the **wall-time budget** ``max_minutes`` (rank 0 decides, every rank learns the answer);
* **best-checkpoint tracking** by a named metric (:class:`BestTracker`, higher or lower better);
* the **training precision** the run actually uses (``precision``: what ``train.precision``
  resolved to for training on this machine, :func:`mrigan.device.resolve_precision`): logged
  when the run opens and written into every checkpoint (``precision``). A resumed run whose
  setting is ``auto`` continues in the recorded precision, deterministically, and says so in one
  line when this machine's ``auto`` would pick another (a bf16 run resumed on a CPU without
  native bf16, or the reverse); an explicit setting that differs from the recorded one wins
  (:meth:`TrainingRun.resume_precision`).

**One loop**: :func:`fit` runs every training task (the GAN, the detector, the realism models
and DA-CLIP). A task is a :class:`Task` (pix2pix's ``BaseModel`` contract: ``train_step`` ->
losses, ``validate`` -> metrics, ``state_dict``, ``set_lr``); :func:`fit` owns what
DeepfakeBench's single trainer owns: resume, the progress counters (epoch, position in the
epoch, step), best tracking by ``select_by`` in that metric's direction (:func:`higher_is_better`),
the validation / checkpoint cadence (:class:`Cadence`), the time budget, the non-finite stop, the
history, the learning-rate schedule (:class:`LrSchedule`, one mechanism for every task, its
state in the checkpoint's ``scheduler``) and the :class:`TrainResult`.

**Resume** means one thing for every task (``resume`` of :func:`fit`): ``True`` (the default of
every trainer: a long job resumes) continues from ``last.pt`` when the run has one and starts
fresh when the run has no checkpoint yet; a ``last.pt`` missing beside a ``best.pt`` is an error
offering ``best.pt``; a path continues from that file (which must exist); ``False`` starts fresh.
A task keeps its own checkpoint keys (:meth:`Task.progress` / :meth:`Task.read_progress`), so
checkpoints written before :func:`fit` still load.
Under DDP every method here is called by every rank (saves gather RNG states: collective).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from mrigan import __version__, distributed
from mrigan.checkpoint import (
    CheckpointError,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
    seed_everything,
)
from mrigan.config import save_config, to_dict
from mrigan.errors import MriganError
from mrigan.lr_schedules import LrSchedule


class NonFiniteLossError(MriganError, RuntimeError, FloatingPointError):
    """A loss became NaN or infinite; the run stopped without saving the bad state."""

log = logging.getLogger("mrigan.loop")


@runtime_checkable
class TrainerPlugin(Protocol):
    """What a trainer gives the skeleton: everything it learns, as one state dict."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class BestTracker:
    """The best value so far of a named metric; ``higher_is_better`` picks the direction.

    NaN never counts as an improvement, except that the first value is always the best so far.
    """

    def __init__(self, metric: str, higher_is_better: bool = True,
                 value: float | None = None, step: int = -1, epoch: int = -1) -> None:
        self.metric = metric
        self.higher_is_better = higher_is_better
        self.value = value
        self.step = step
        self.epoch = epoch  # the epoch of the best value (the step's epoch)

    def is_better(self, value: float) -> bool:
        if self.value is None:
            return True
        if math.isnan(value):
            return False
        if math.isnan(self.value):
            return True
        return value > self.value if self.higher_is_better else value < self.value

    def update(self, value: float, step: int, epoch: int = -1) -> bool:
        """Record ``value`` at ``step`` (of ``epoch``); True when it is the new best."""
        if not self.is_better(value):
            return False
        self.value, self.step, self.epoch = float(value), int(step), int(epoch)
        return True

    def state_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "value": self.value, "step": self.step}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.value, self.step = state["value"], int(state["step"])


def remove_orphan_temps(folder: Path) -> list[Path]:
    """Delete the ``.<name>.*.tmp`` files that :func:`mrigan.fileio.atomic_open` leaves when a
    run is killed mid-save (the file they were meant to replace is intact). Returns them."""
    if not folder.is_dir():
        return []
    removed = []
    for tmp in sorted(folder.glob(".*.tmp")):
        if tmp.is_file():
            tmp.unlink()
            removed.append(tmp)
    return removed


def state_dict_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Keys missing on either side or with another shape, as ``key (saved -> now)`` strings."""
    diffs = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        shape_a = tuple(a.shape) if isinstance(a, torch.Tensor) else a
        shape_b = tuple(b.shape) if isinstance(b, torch.Tensor) else b
        if key not in saved or key not in current or shape_a != shape_b:
            diffs.append(f"{key} ({'missing' if key not in saved else shape_a} -> "
                         f"{'missing' if key not in current else shape_b})")
    return diffs


def check_same_architecture(path: Path, saved: Mapping[str, Any], current: Mapping[str, Any],
                            what: str = "model") -> None:
    """A :class:`CheckpointError` naming the differing keys when a resumed checkpoint's
    ``saved`` state dict (or config section) does not fit the ``current`` one."""
    if all(isinstance(v, torch.Tensor) for v in (*saved.values(), *current.values())):
        diffs = state_dict_differences(saved, current)
    else:
        diffs = [f"{k} ({saved.get(k)!r} -> {current.get(k)!r})"
                 for k in sorted(set(saved) | set(current)) if saved.get(k) != current.get(k)]
    if diffs:
        shown = ", ".join(diffs[:8]) + (f" and {len(diffs) - 8} more" if len(diffs) > 8 else "")
        raise CheckpointError(f"the {what} architecture changed since this checkpoint was "
                              f"written: {shown}; resume with the same settings or start a "
                              "new run (another name)", path=path)


class TrainingRun:
    """Run folder, checkpoints, resume, TensorBoard, NaN stop and time budget of one run.

    ``run_dir`` may be ``None``: an in-memory run (no files, no writer, no resume).
    """

    def __init__(self, run_dir: str | Path | None, config: Any, *, fmt: str,
                 format_key: str = "format", max_minutes: float = 0.0,
                 tensorboard: bool = True, save_config_file: bool = True,
                 precision: str | None = None) -> None:
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.config = config
        #: the resolved training precision (fp32 | bf16 | fp16), recorded in every checkpoint
        self.precision = precision
        self.fmt, self.format_key = fmt, format_key
        self.max_minutes = float(max_minutes)
        self.dist = distributed.info()
        self.writer = None
        self._tensorboard = tensorboard and self.run_dir is not None
        self._save_config = save_config_file
        self._started = time.monotonic()
        self.removed_temps: list[Path] = []

    # --- files -----------------------------------------------------------------------------

    @property
    def checkpoint_dir(self) -> Path | None:
        return self.run_dir / "checkpoints" if self.run_dir is not None else None

    @property
    def last_path(self) -> Path | None:
        return self.checkpoint_dir / "last.pt" if self.run_dir is not None else None

    @property
    def best_path(self) -> Path | None:
        return self.checkpoint_dir / "best.pt" if self.run_dir is not None else None

    def open(self, purge_step: int | None = None) -> TrainingRun:
        """Rank 0: create the folder, remove orphan temp files, write ``config.yaml``, open the
        TensorBoard writer (``purge_step``: drop events at or after it, for resumed runs)."""
        self._started = time.monotonic()
        if self.dist.is_main and self.precision is not None:
            log.info("training precision: %s", self.precision)
        if self.dist.is_main and self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.removed_temps += (remove_orphan_temps(self.run_dir)
                                   + remove_orphan_temps(self.checkpoint_dir))
            for tmp in self.removed_temps:
                log.warning("removed %s, left by a save that was killed", tmp)
            if self._save_config:
                save_config(self.config, self.run_dir / "config.yaml")
            if self._tensorboard:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=purge_step or None)
        return self

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def __enter__(self) -> TrainingRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- resume ----------------------------------------------------------------------------

    def resume_path(self, resume: bool | str | Path | None, required: bool = True) -> Path | None:
        """``True``: ``last.pt`` of this run; a path: that file; falsy: ``None``. A missing
        file is a :class:`CheckpointError` when ``required`` (else ``None``: a fresh start)."""
        if not resume:
            return None
        path = self.last_path if resume is True else Path(resume)
        if path is None:
            raise CheckpointError("resume needs a run folder (out_dir)")
        if not path.is_file() and not required:
            return None
        return path

    def _offer_best(self, path: Path) -> str:
        best = self.best_path
        if best is not None and best != path and best.is_file() and best.stat().st_size > 0:
            return f"; {best} exists: resume from that file instead, or start a new run"
        return "; start a new run (another name) or restore the file"

    def load(self, path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
        """Read a checkpoint of this trainer's format; every failure is a CheckpointError."""
        if self.dist.is_main and path.parent == self.checkpoint_dir:  # a killed save's leftovers
            self.removed_temps += remove_orphan_temps(path.parent)  # (only in this run's folder)
        if not path.is_file():
            raise CheckpointError(f"no checkpoint to resume from{self._offer_best(path)}",
                                  path=path)
        if path.stat().st_size == 0:
            raise CheckpointError(f"empty checkpoint file (0 bytes){self._offer_best(path)}",
                                  path=path)
        try:
            state = load_checkpoint(path, map_location=map_location)
        except CheckpointError as exc:
            reason = " ".join(str(exc.__cause__ or exc).split())[:200]
            raise CheckpointError(f"truncated or corrupt checkpoint ({reason})"
                                  f"{self._offer_best(path)}", path=path) from exc
        if state.get(self.format_key) != self.fmt:
            raise CheckpointError(f"not a {self.fmt} checkpoint ({self.format_key}="
                                  f"{state.get(self.format_key)!r}){self._offer_best(path)}",
                                  path=path)
        return state

    def resume(self, resume: bool | str | Path | None, map_location: str | torch.device = "cpu",
               required: bool = True) -> tuple[Path, dict[str, Any]] | None:
        """The checkpoint to continue from, or ``None`` for a fresh start."""
        path = self.resume_path(resume, required=required)
        return None if path is None else (path, self.load(path, map_location))

    def resume_precision(self, path: Path, ckpt: Mapping[str, Any],
                         configured: str) -> str | None:
        """The precision a resumed run continues in (module doc), also kept as
        :attr:`precision`. ``configured`` is the run's ``train.precision`` setting; call before
        loading optimizer/scaler state (an fp16 run has a gradient scaler)."""
        recorded, current = ckpt.get("precision"), self.precision
        if current is None:  # a run that does not track its precision: keep what was recorded
            self.precision = recorded
            return self.precision
        if recorded is None or recorded == current:  # checkpoints before issue 20: as now
            return current
        if str(configured).lower() == "auto":
            if self.dist.is_main:
                log.warning("%s was trained in %s; precision auto here would be %s: continuing "
                            "in %s as recorded (set train.precision to change it)", path,
                            recorded, current, recorded)
            self.precision = str(recorded)
        elif self.dist.is_main:
            log.warning("%s was trained in %s; continuing in %s as train.precision says",
                        path, recorded, current)
        return self.precision

    def restore_rng(self, ckpt: Mapping[str, Any], reseed: int) -> bool:
        """Put back this rank's RNG states; with another number of processes, reseed from
        ``reseed + rank`` instead and return False (the noise then differs)."""
        rng = ckpt.get("rng")
        if isinstance(rng, dict):
            rng = [rng]
        if rng and len(rng) == self.dist.world_size:
            restore_rng_state(rng[self.dist.rank])
            return True
        seed_everything(reseed + self.dist.rank)
        return False

    # --- saving ----------------------------------------------------------------------------

    def checkpoint(self, plugin: TrainerPlugin, progress: Mapping[str, Any]) -> dict[str, Any]:
        """The full checkpoint dict (collective under DDP: gathers every rank's RNG)."""
        return {self.format_key: self.fmt, **plugin.state_dict(), **progress,
                "rng": distributed.all_gather_object(capture_rng_state()),
                "world_size": self.dist.world_size, "config": to_dict(self.config),
                "precision": self.precision, "mrigan_version": __version__}

    def save(self, plugin: TrainerPlugin, progress: Mapping[str, Any], *, last: bool = True,
             best: bool = False) -> dict[str, Any]:
        """Write ``last.pt`` and/or ``best.pt`` (rank 0, atomic). Every rank calls it."""
        state = self.checkpoint(plugin, progress)
        if self.dist.is_main and self.run_dir is not None:
            for wanted, path in ((last, self.last_path), (best, self.best_path)):
                if wanted:
                    save_checkpoint(path, state)
        return state

    # --- stops -----------------------------------------------------------------------------

    def last_good(self) -> str:
        last = self.last_path
        return str(last) if last is not None and last.is_file() else "none yet"

    def check_finite(self, values: Mapping[str, torch.Tensor] | torch.Tensor, where: str,
                     error: type[Exception], hint: str = "") -> None:
        """Raise ``error`` on every rank when any value on any rank is NaN or infinite; the
        message names the values and the last good checkpoint."""
        tensors = values if isinstance(values, Mapping) else {"loss": values}
        stacked = torch.stack([v.detach().float().reshape(()) for v in tensors.values()])
        bad = distributed.all_reduce_sum((~torch.isfinite(stacked)).any().float())
        if bad.item():
            shown = {k: float(v) for k, v in tensors.items()}
            raise error(f"{where}: non-finite loss {shown}; training stopped. Last good "
                        f"checkpoint: {self.last_good()}.{(' ' + hint) if hint else ''}")

    def out_of_time(self) -> bool:
        """True on every rank once ``max_minutes`` of wall time have passed on rank 0."""
        if self.max_minutes <= 0:
            return False
        return bool(distributed.broadcast_object(
            time.monotonic() - self._started >= 60.0 * self.max_minutes))

    def scalars(self, values: Mapping[str, float], step: int, prefix: str = "") -> None:
        if self.writer is not None:
            for k, v in values.items():
                self.writer.add_scalar(f"{prefix}{k}", v, step)


# --- metrics' direction ----------------------------------------------------------------------

#: metric names (or name endings: ``val_rmse``) for which lower is better; every other metric
#: (AUC, SSIM, correlations, accuracy) is higher-is-better.
LOWER_IS_BETTER = ("loss", "rmse", "mae", "eer", "l2")


def higher_is_better(metric: str) -> bool:
    """The direction of a metric by its name (the last dotted part's ending)."""
    return not metric.rsplit(".", 1)[-1].endswith(LOWER_IS_BETTER)


# --- the one training loop -------------------------------------------------------------------


@dataclass(frozen=True)
class Cadence:
    """When :func:`fit` validates, checkpoints and stops (steps count optimizer steps)."""

    epochs: int
    max_steps: int | None = None  # stop after this many steps (None or 0: all epochs)
    max_minutes: float = 0.0  # wall-time budget (0: none); the run stops with last.pt
    eval_every: int = 0  # validate every N steps (0: not by steps)
    eval_every_epochs: int = 0  # validate after every N-th epoch and the last (0: not by epochs)
    checkpoint_every: int | None = None  # last.pt every N steps (None or 0: not by steps)
    checkpoint_epochs: bool = False  # last.pt after every epoch
    early_stopping: int = 0  # stop when the best is this many epochs old (0: never)
    mid_epoch_stops: bool = True  # False: the budget stops only at an epoch's end
    final_eval: bool = True  # validate at the end of the run (never after a time stop)


@dataclass
class LoopState:
    """Where a run is: the position of the next batch (``epoch``, ``batch_in_epoch``), the
    optimizer steps done, the epoch of the last step, best, history and the last validation."""

    best: BestTracker
    epoch: int = 0
    batch_in_epoch: int = 0
    step: int = 0
    trained_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    last_eval: dict[str, Any] = field(default_factory=dict)  # the last validation's history row
    last_eval_step: int = -1
    last_eval_had_data: bool = False
    stopped: str = ""  # "" (all epochs) | max_steps | time | early_stopping


@dataclass
class TrainResult:
    """What a training run gives back, for every task."""

    run_dir: Path | None
    step: int
    epoch: int
    select_by: str
    best_value: float | None  # the best ``select_by``; None before any validation with data
    best_step: int
    best_epoch: int
    last_checkpoint: Path | None
    best_checkpoint: Path | None
    history: list[dict[str, Any]] = field(default_factory=list)
    last_eval: dict[str, Any] = field(default_factory=dict)  # the last validation's history row
    stopped: str = ""  # "" (all epochs) | max_steps | time | early_stopping
    precision: str | None = None  # the precision the run trained in (a resumed run's recorded one)
    model: Any = None  # the trained model, where the task returns it (realism: the best weights)
    extras: dict[str, Any] = field(default_factory=dict)  # task-specific outcomes


class Task:
    """A training task: what :func:`fit` needs of the GAN, a detector, a realism model...

    Required: :meth:`batches`, :meth:`train_step`, :meth:`state_dict` /
    :meth:`load_state_dict`; usually :meth:`validate` (metrics; ``select_by`` names the one
    that picks ``best.pt``, its direction from :func:`higher_is_better`) and :meth:`set_lr`
    with a :attr:`schedule`. The other methods are hooks with defaults; a task whose checkpoint
    format predates :func:`fit` overrides :meth:`progress` / :meth:`read_progress`.
    """

    select_by: str = "loss"
    schedule: LrSchedule | None = None
    device: torch.device = torch.device("cpu")
    precision_setting: str = "fp32"  # the configured precision (auto resolves on resume)
    seed: int = 0
    nonfinite_hint: str = ""

    @property
    def higher_is_better(self) -> bool:
        return higher_is_better(self.select_by)

    # --- required ------------------------------------------------------------------------

    def batches(self, epoch: int, batch_in_epoch: int) -> Iterator[tuple[tuple[int, int], Any]]:
        """This rank's batches from the position ``(epoch, batch_in_epoch)`` to the last epoch,
        each with the position *after* it (the next epoch starts at batch 0)."""
        raise NotImplementedError

    def train_step(self, batch: Any, step: int) -> Mapping[str, torch.Tensor]:
        """One optimizer step (``step`` done before it); detached loss terms."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    # --- optional --------------------------------------------------------------------------

    def validate(self, state: LoopState) -> dict[str, float]:
        """Validation metrics, the same on every rank; ``{}``: no validation data (every
        validation then counts as the best: ``best.pt`` is the latest)."""
        return {}

    def set_lr(self, lr: float) -> None:
        """Use ``lr`` for the coming step (the :attr:`schedule`'s value)."""

    def set_precision(self, precision: str | None) -> None:
        """Train in ``precision`` from now on (a resumed run's recorded one)."""

    def check_resume(self, path: Path, ckpt: Mapping[str, Any]) -> None:
        """Refuse (:class:`CheckpointError`) a checkpoint this run's settings cannot continue."""

    def progress(self, state: LoopState) -> dict[str, Any]:
        """The checkpoint's progress keys."""
        return {"epoch": state.epoch, "batch_in_epoch": state.batch_in_epoch,
                "step": state.step, "history": state.history,
                "best": {**state.best.state_dict(), "epoch": state.best.epoch}}

    def read_progress(self, ckpt: Mapping[str, Any], state: LoopState) -> None:
        """The inverse of :meth:`progress`."""
        state.epoch, state.batch_in_epoch, state.step = (ckpt["epoch"], ckpt["batch_in_epoch"],
                                                         ckpt["step"])
        best = ckpt["best"]
        state.best.value, state.best.step, state.best.epoch = (best["value"], best["step"],
                                                               best["epoch"])
        state.history = list(ckpt["history"])

    def history_row(self, state: LoopState, metrics: Mapping[str, float]) -> dict[str, Any]:
        return {"epoch": state.trained_epoch, "step": state.step, **metrics}

    def after_step(self, state: LoopState, losses: Mapping[str, torch.Tensor], batch: Any) -> None:
        """After every step (logging); ``state`` is already at the position after it."""

    def report(self, state: LoopState, row: Mapping[str, Any], improved: bool) -> None:
        """After a validation, before the checkpoint (logs, TensorBoard, history files)."""
        self.say(f"step {state.step}: " + ", ".join(
            f"{k} {v:.4f}" for k, v in row.items() if isinstance(v, float)))

    def started(self, run: TrainingRun, state: LoopState) -> None:
        """The run folder is open (rank 0 wrote config.yaml)."""

    def finish(self, state: LoopState) -> None:
        """Training ended (every rank)."""

    def say(self, message: str) -> None:
        if distributed.info().is_main:
            log.info("%s", message)

    def purge_step(self, state: LoopState) -> int:
        """TensorBoard's x of the resumed position (events from it on are dropped)."""
        return state.step


StepCallback = Callable[[Task, int, Mapping[str, torch.Tensor]], None]


def _resume_checkpoint(run: TrainingRun, resume: bool | str | Path | None,
                       map_location: torch.device) -> tuple[Path, dict[str, Any]] | None:
    """The one meaning of ``resume`` (module doc)."""
    if not resume:
        return None
    if resume is True:
        last, best = run.last_path, run.best_path
        if last is None:
            return None
        if not last.is_file() and not best.is_file():
            return None  # nothing trained yet: a fresh start
    return run.resume(resume, map_location=map_location)


def _restore(task: Task, run: TrainingRun, state: LoopState, path: Path,
             ckpt: dict[str, Any]) -> None:
    task.check_resume(path, ckpt)
    task.set_precision(run.resume_precision(path, ckpt, task.precision_setting))
    try:
        task.load_state_dict(ckpt)
    except (KeyError, RuntimeError) as exc:
        raise CheckpointError(f"weights do not fit this run's models ({exc})".split("\n")[0],
                              path=path) from exc
    if task.schedule is not None:
        task.schedule.load_state_dict(ckpt.get("scheduler") or {})
    task.read_progress(ckpt, state)
    state.trained_epoch = state.epoch if state.batch_in_epoch else max(0, state.epoch - 1)
    if state.history:
        state.last_eval = {k: v for k, v in state.history[-1].items()}
        state.last_eval_step = int(state.history[-1].get("step", state.step))
    if not run.restore_rng(ckpt, reseed=task.seed + 7919 * state.step):
        if run.dist.is_main:
            log.warning("%s was written by %d processes, resuming with %d: RNG streams "
                        "reseeded, so random draws will differ from an uninterrupted run",
                        path, len(ckpt.get("rng") or []), run.dist.world_size)
    task.say(f"resumed from {path} at step {state.step} (epoch {state.epoch}, batch "
             f"{state.batch_in_epoch})")


def _save(task: Task, run: TrainingRun, state: LoopState, *, last: bool, best: bool) -> None:
    progress = task.progress(state)
    if task.schedule is not None:
        progress["scheduler"] = task.schedule.state_dict()
    run.save(task, progress, last=last, best=best)


def _validate(task: Task, state: LoopState) -> bool:
    """Validate, record the history row and the best; True when it is the new best."""
    metrics = task.validate(state)
    row = task.history_row(state, metrics)
    state.history.append(row)
    best = state.best
    if not metrics or best.step < 0:  # no validation data, or the first: the best so far
        if metrics:
            best.value = float(metrics.get(best.metric, math.nan))
        best.step, best.epoch, improved = state.step, state.trained_epoch, True
    else:
        improved = best.update(metrics[best.metric], state.step, state.trained_epoch)
    state.last_eval, state.last_eval_step = dict(row), state.step
    state.last_eval_had_data = bool(metrics)
    task.report(state, row, improved)
    if task.schedule is not None:
        monitored = metrics.get(best.metric) if metrics else row.get("loss")
        if monitored is not None:
            task.schedule.observe(monitored, best.higher_is_better if metrics else False)
    return improved


def _train(task: Task, run: TrainingRun, cadence: Cadence, state: LoopState,
           callbacks: Sequence[StepCallback]) -> bool:
    """The steps; True when the time budget stopped them."""
    if (cadence.max_steps and state.step >= cadence.max_steps) or state.epoch >= cadence.epochs:
        return False
    batches = task.batches(state.epoch, state.batch_in_epoch)
    try:
        for after, batch in batches:
            if task.schedule is not None:
                task.set_lr(task.schedule.lr(state.step, state.epoch))
            losses = task.train_step(batch, state.step)
            state.step += 1
            state.trained_epoch = state.epoch
            run.check_finite(losses, f"step {state.step} (epoch {state.epoch})",
                             NonFiniteLossError, task.nonfinite_hint)
            state.epoch, state.batch_in_epoch = after  # where a checkpoint resumes from
            task.after_step(state, losses, batch)
            epoch_end = state.batch_in_epoch == 0
            improved = False
            if ((cadence.eval_every and state.step % cadence.eval_every == 0)
                    or (epoch_end and cadence.eval_every_epochs
                        and ((state.trained_epoch + 1) % cadence.eval_every_epochs == 0
                             or state.epoch >= cadence.epochs))):
                improved = _validate(task, state)
            last = bool((cadence.checkpoint_every and state.step % cadence.checkpoint_every == 0)
                        or (epoch_end and cadence.checkpoint_epochs))
            if last or improved:
                _save(task, run, state, last=last, best=improved)
            for callback in callbacks:
                callback(task, state.step, losses)
            if cadence.max_steps and state.step >= cadence.max_steps:
                state.stopped = "max_steps"
                break
            best = state.best
            if (cadence.early_stopping and epoch_end and state.last_eval_had_data
                    and state.last_eval_step == state.step
                    and state.trained_epoch - best.epoch >= cadence.early_stopping):
                state.stopped = "early_stopping"
                task.say(f"early stopping: no better {best.metric} for "
                         f"{cadence.early_stopping} epochs (best epoch {best.epoch})")
                break
            if (cadence.mid_epoch_stops or epoch_end) and run.out_of_time():  # rank 0 decides
                state.stopped = "time"
                task.say(f"step {state.step}: time budget of {cadence.max_minutes:g} min used; "
                         f"stopping (resume continues exactly from {run.last_path})")
                return True
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()  # a generator's loaders (and their workers) go now
    return False


def fit(task: Task, run: TrainingRun, cadence: Cadence, *,
        resume: bool | str | Path | None = True,
        callbacks: Sequence[StepCallback] = ()) -> TrainResult:
    """Train ``task`` in ``run`` as ``cadence`` says; ``resume`` as in the module doc.

    ``callbacks`` run after every step with ``(task, step, losses)``. Under DDP every rank calls
    it. At the end of the run: a last validation (unless the time budget stopped it: a resumed
    run then equals an uninterrupted one, history included) and ``last.pt``.
    """
    state = LoopState(best=BestTracker(task.select_by, task.higher_is_better))
    found = _resume_checkpoint(run, resume, task.device)
    if found is not None:
        _restore(task, run, state, *found)
    with run.open(purge_step=task.purge_step(state)):
        task.started(run, state)
        out_of_time = _train(task, run, cadence, state, callbacks)
        improved = False
        if cadence.final_eval and not out_of_time and state.last_eval_step != state.step:
            improved = _validate(task, state)
        _save(task, run, state, last=True, best=improved)
    distributed.barrier()
    task.finish(state)
    best = state.best
    return TrainResult(run_dir=run.run_dir, step=state.step, epoch=state.epoch,
                       select_by=best.metric, best_value=best.value, best_step=best.step,
                       best_epoch=best.epoch, last_checkpoint=run.last_path,
                       best_checkpoint=run.best_path if best.step >= 0 else None,
                       history=state.history, last_eval=state.last_eval, stopped=state.stopped,
                       precision=run.precision)
