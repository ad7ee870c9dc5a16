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

A trainer is a :class:`TrainerPlugin` (its models, optimizers and schedulers as a state dict) plus
its loop over batches; it keeps its own progress counters (epoch, step, history) and passes them
to :meth:`TrainingRun.save` so its checkpoint format stays what readers of it expect.
Under DDP every method here is called by every rank (saves gather RNG states: collective).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
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
                 value: float | None = None, step: int = -1) -> None:
        self.metric = metric
        self.higher_is_better = higher_is_better
        self.value = value
        self.step = step

    def is_better(self, value: float) -> bool:
        if self.value is None:
            return True
        if math.isnan(value):
            return False
        if math.isnan(self.value):
            return True
        return value > self.value if self.higher_is_better else value < self.value

    def update(self, value: float, step: int) -> bool:
        """Record ``value`` at ``step``; True when it is the new best."""
        if not self.is_better(value):
            return False
        self.value, self.step = float(value), int(step)
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
