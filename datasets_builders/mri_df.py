"""``build_mri_df(config)``: the MRI-DF dataset of (face, MRI) pairs from real deepfake datasets.

For every original video (a *unit*: the original and every fake made from it) the builder
decodes every Nth frame of the original and its fakes in lockstep, applies the unit's
augmentation plan identically to all of them, detects faces on the ORIGINAL (boxes cached as
JSON and reused), tracks them, cuts the same square from every video and writes the real crop
with a black MRI and each fake crop with its MRI under ``mri_metric`` (``ssim``, the paper's:
``MRI = clip(1 - SSIM(real crop, fake crop), 0, 1)``).

Why units: everything a fake needs (its original's frames and boxes) is inside its unit, so
units are independent. That gives resumability (a killed build loses at most the unit in
progress), sharding (``shard: k/n`` takes every n-th unit of the sorted list; all shards may
write to one output folder) and a manifest that is the same whatever the order, interruptions
or sharding (rows are joined in unit order), and the same with ``workers: N`` (units built in N
processes, recorded in unit order by this one: ``build_workers``).

The stages live in their own modules: ``build_config`` (settings, validated), ``build_plan``
(sources -> units, unique ids, splits, shards), ``build_unit`` (one unit -> PNGs and rows),
``build_records`` (done records, settings fingerprint, writer lock, summary), ``build_run``
(the build loop shared with the face-set builder). This module runs them.
"""

from __future__ import annotations

import logging
from collections import Counter
from functools import partial
from pathlib import Path

from datasets_builders.build_config import (
    BuildAugmentConfig,
    BuildConfig,
    BuildError,
    BuildSelfBlendConfig,
    BuildSourceConfig,
    BuildSplitConfig,
    FaceDetectionConfig,
    parse_shard,
)
from datasets_builders.build_plan import assign_splits, plan_units, shard_units
from datasets_builders.build_records import BuildSummary
from datasets_builders.build_run import RESULT_EXTRA, check_output, merge_records, run_units
from datasets_builders.build_unit import Context, StageTimer
from datasets_builders.build_unit import process_unit as _process_unit
from datasets_builders.faces import BoxCache, Detectors, FaceDetector

_log = logging.getLogger(__name__)


def build_mri_df(cfg: BuildConfig, *, log=_log.info, detector: FaceDetector | None = None,
                 restart: bool = False) -> BuildSummary:
    """Build (or resume, or build one shard of) MRI-DF under ``cfg.out``; see the module doc.

    ``detector``: an already loaded ``FaceDetector`` to use instead of one built from
    ``cfg.faces`` (reuse one model across several builds); its settings go into the box cache
    key either way. ``restart``: remove an earlier build's outputs in ``cfg.out`` first (needed
    when the settings changed; see ``build_records``).
    """
    check_output(cfg)
    plan = plan_units(cfg)
    seconds: Counter = Counter()
    frames = [0]

    def on_result(timing) -> None:
        seconds.update(timing["seconds"])
        frames[0] += timing["frames"]

    def finish(summary: BuildSummary) -> None:
        summary.seconds = {k: round(v, 3) for k, v in seconds.items()}
        summary.frames_decoded = frames[0]

    return run_units(cfg, plan, partial(UnitProcess, cfg, detector), restart=restart,
                     summary=BuildSummary(), desc="MRI-DF units", log=log, finish=finish,
                     on_result=on_result)


class UnitProcess:
    """``process(unit) -> record`` of one build process (this one, or each worker): its
    detectors, box cache and writer; each record carries the unit's stage timings (popped by
    ``run_units`` before the record is saved)."""

    def __init__(self, cfg: BuildConfig, detector: FaceDetector | None, out: Path) -> None:
        self.ctx = Context(cfg, out, StageTimer(), BoxCache(out / "boxes"),
                           Detectors(cfg.faces, first=detector))

    def __call__(self, unit) -> dict:
        timer = self.ctx.timer = StageTimer()
        record = _process_unit(unit, self.ctx)
        record[RESULT_EXTRA] = {"seconds": dict(timer.seconds), "frames": timer.frames}
        return record


def merge_shards(cfg: BuildConfig, *, log=_log.info) -> BuildSummary:
    """Join the shards' records into ``manifest.csv`` (fails listing what is still missing)."""
    return merge_records(cfg, plan_units(cfg), BuildSummary(), log=log)


__all__ = [
    "BuildAugmentConfig",
    "BuildConfig",
    "BuildError",
    "BuildSelfBlendConfig",
    "BuildSourceConfig",
    "BuildSplitConfig",
    "BuildSummary",
    "FaceDetectionConfig",
    "assign_splits",
    "build_mri_df",
    "check_output",
    "merge_shards",
    "parse_shard",
    "plan_units",
    "shard_units",
]
