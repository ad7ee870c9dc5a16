"""Learning-rate schedules: one mechanism for every training task (:func:`mrigan.loop.fit` sets
the schedule's value before each step and keeps its state in the checkpoint's ``scheduler``).

* :class:`LrSchedule`: constant;
* :class:`CosineLr`: half a cosine to 0, by step (the detector's ``train.scheduler: cosine``) or
  by epoch (the realism trainer's, torch's ``CosineAnnealingLR`` values);
* :class:`LinearDecayLr`: pix2pix's ``linear`` policy (the GAN's ``optim.decay_steps``);
* :class:`PlateauLr`: torch's ``ReduceLROnPlateau`` (the realism trainer's ``plateau``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


class LrSchedule:
    """The learning rate of each optimizer step; :func:`mrigan.loop.fit` sets it (``Task.set_lr``)
    before every step and saves :meth:`state_dict` in the checkpoint's ``scheduler``.

    ``lr(step, epoch)`` is called with the completed steps and the epoch of the coming step.
    Stateless schedules (constant, cosine, linear decay) are functions of those alone, so a
    resumed run follows the same curve; :class:`PlateauLr` keeps its state in the checkpoint.
    """

    def __init__(self, base: float) -> None:
        self.base = float(base)

    def lr(self, step: int, epoch: int) -> float:
        return self.base

    def observe(self, value: float, higher_is_better: bool) -> None:
        """A validation's monitored value (the selection metric, else the training loss)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Stateless: nothing (a checkpoint's torch scheduler state is not needed)."""


class CosineLr(LrSchedule):
    """Half a cosine from ``base`` to 0 over ``total`` steps (``per="step"``, closed form) or
    epochs (``per="epoch"``: the values of torch's ``CosineAnnealingLR`` stepped once an epoch,
    its recursive form, so runs made with it keep their learning rates)."""

    def __init__(self, base: float, total: int, per: str = "step") -> None:
        super().__init__(base)
        self.total, self.per = int(total), per

    def lr(self, step: int, epoch: int) -> float:
        if self.total <= 0:
            return self.base
        if self.per == "step":
            return 0.5 * self.base * (1.0 + math.cos(math.pi * min(step, self.total) / self.total))
        lr, t = self.base, self.total
        for e in range(1, epoch + 1):  # torch's CosineAnnealingLR.get_lr, eta_min 0
            if (e - 1 - t) % (2 * t) == 0:
                lr = lr + self.base * (1 - math.cos(math.pi / t)) / 2
            else:
                lr = (1 + math.cos(math.pi * e / t)) / (1 + math.cos(math.pi * (e - 1) / t)) * lr
        return lr


def linear_decay_factor(step: int, total_steps: int, decay_steps: int) -> float:
    """pix2pix's ``linear`` policy: the multiplier of the base lr for the step after ``step``
    completed ones; 1, then linearly to 0 over the last ``decay_steps`` of ``total_steps``."""
    if decay_steps <= 0:
        return 1.0
    start = total_steps - decay_steps
    return 1.0 if step < start else max(0.0, (total_steps - step) / decay_steps)


class LinearDecayLr(LrSchedule):
    """:func:`linear_decay_factor` times ``base`` (constant when ``decay_steps`` is 0)."""

    def __init__(self, base: float, total: int, decay_steps: int) -> None:
        super().__init__(base)
        self.total, self.decay_steps = int(total), int(decay_steps)

    def lr(self, step: int, epoch: int) -> float:
        return self.base * linear_decay_factor(step, self.total, self.decay_steps)


class PlateauLr(LrSchedule):
    """``lr *= factor`` after more than ``patience`` validations without a better monitored
    value: torch's ``ReduceLROnPlateau`` (relative threshold 1e-4, no cooldown, min lr 0, eps
    1e-8), whose state keys it reads, so checkpoints written with it still resume."""

    THRESHOLD, EPS = 1e-4, 1e-8

    def __init__(self, base: float, factor: float = 0.1, patience: int = 10) -> None:
        super().__init__(base)
        self.factor, self.patience = float(factor), int(patience)
        self.current, self.best, self.num_bad_epochs = float(base), None, 0

    def lr(self, step: int, epoch: int) -> float:
        return self.current

    def observe(self, value: float, higher_is_better: bool) -> None:
        value = float(value)
        if self.best is None:
            self.best = -math.inf if higher_is_better else math.inf
        better = (value > self.best * (1.0 + self.THRESHOLD) if higher_is_better
                  else value < self.best * (1.0 - self.THRESHOLD))
        if better:
            self.best, self.num_bad_epochs = value, 0
        else:
            self.num_bad_epochs += 1
        if self.num_bad_epochs > self.patience:
            new = max(self.current * self.factor, 0.0)
            if self.current - new > self.EPS:
                self.current = new
            self.num_bad_epochs = 0

    def state_dict(self) -> dict[str, Any]:
        return {"_last_lr": [self.current], "best": self.best,
                "num_bad_epochs": self.num_bad_epochs}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("_last_lr"):  # ours, or torch's ReduceLROnPlateau state (before fit())
            self.current = float(state["_last_lr"][0])
        self.best = state.get("best")
        if self.best is not None and math.isinf(self.best) and "mode" in state:
            self.best = None  # torch's initial +-inf: set by the first observe
        self.num_bad_epochs = int(state.get("num_bad_epochs", 0))
