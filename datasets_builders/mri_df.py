"""``build_mri_df(config)``: the MRI-DF dataset of (face, MRI) pairs from real deepfake datasets.

For every original video (a *unit*: the original and every fake made from it) the builder
decodes every Nth frame of the original and its fakes in lockstep, applies the unit's
augmentation plan identically to all of them, detects faces on the ORIGINAL (boxes cached as
JSON and reused), tracks them, cuts the same square from every video and writes the real crop
with a black MRI and each fake crop with ``MRI = clip(1 - SSIM(real crop, fake crop), 0, 1)``.

Why units: everything a fake needs (its original's frames and boxes) is inside its unit, so
units are independent. That gives resumability (a killed build loses at most the unit in
progress), sharding (``shard: k/n`` takes every n-th unit of the sorted list; all shards may
write to one output folder) and a manifest that is the same whatever the order, interruptions
or sharding (rows are joined in unit order).

The stages live in their own modules: ``build_config`` (settings, validated), ``build_plan``
(sources -> units, unique ids, splits, shards), ``build_unit`` (one unit -> PNGs and rows),
``build_records`` (done records, settings fingerprint, writer lock, summary). This module
runs them.
"""

from __future__ import annotations

from pathlib import Path

from datasets_builders.build_config import (
    AugmentConfig,
    BuildConfig,
    BuildError,
    FaceConfig,
    SourceConfig,
    SplitConfig,
    parse_shard,
)
from datasets_builders.build_plan import Plan, Unit, assign_splits, plan_units, shard_units
from datasets_builders.build_records import (
    BuildLock,
    BuildSummary,
    check_fingerprint,
    fingerprint,
    load_record,
    save_record,
    summarise,
)
from datasets_builders.build_unit import Context, StageTimer
from datasets_builders.build_unit import process_unit as _process_unit
from datasets_builders.faces import BoxCache, Detectors, FaceDetector
from mrigan.config import save_config
from mrigan.outputs import OutputLocationError, check_output_dir


def check_output(cfg: BuildConfig, plan: Plan | None = None) -> Path:
    """The output folder, refused when it is inside an input's folder (a listed video's folder
    or a dataset folder), holds an input, or is a file. A CSV listing's own folder is not an
    input folder (its videos' folders are)."""
    inputs = [s.root for s in cfg.sources if s.kind != "csv" and s.root]
    if plan is not None:
        inputs += [str(p) for p in plan.inputs]
    try:
        return check_output_dir(cfg.out, inputs)
    except OutputLocationError as exc:
        raise BuildError(exc.problem, exc.path) from exc


def build_mri_df(cfg: BuildConfig, *, log=print, detector: FaceDetector | None = None,
                 restart: bool = False) -> BuildSummary:
    """Build (or resume, or build one shard of) MRI-DF under ``cfg.out``; see the module doc.

    ``detector``: an already loaded ``FaceDetector`` to use instead of one built from
    ``cfg.faces`` (reuse one model across several builds); its settings go into the box cache
    key either way. ``restart``: remove an earlier build's outputs in ``cfg.out`` first (needed
    when the settings changed; see ``build_records``).
    """
    check_output(cfg)
    plan = plan_units(cfg)
    out = check_output(cfg, plan)
    mine = shard_units(plan.units, cfg.shard)
    out.mkdir(parents=True, exist_ok=True)
    fp = fingerprint(cfg)
    with BuildLock(out, cfg.shard_tag):
        check_fingerprint(out, fp, restart=restart)
        save_config(cfg, out / ("config.yaml" if cfg.shard == "1/1" else
                                f"config.shard-{cfg.shard_tag}.yaml"))
        timer = StageTimer()
        ctx = Context(cfg, out, timer, BoxCache(out / "boxes"), Detectors(cfg.faces, first=detector))
        summary = BuildSummary(units_total=len(plan.units), units_in_shard=len(mine))
        bar = _progress(mine, cfg.progress)
        pairs = 0
        for unit in bar:
            if load_record(out, unit, fp) is not None:
                summary.units_resumed += 1
                continue
            record = _process_unit(unit, ctx)
            save_record(out, unit, record, fp)
            summary.units_built += 1
            pairs += len(record["rows"])
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(pairs=pairs, refresh=False)
        summary.seconds = {k: round(v, 3) for k, v in timer.seconds.items()}
        summary.frames_decoded = timer.frames
        summarise(plan, out, summary, fp, write=True)
    for line in summary.lines():
        log(line)
    return summary


def merge_shards(cfg: BuildConfig, *, log=print) -> BuildSummary:
    """Join the shards' records into ``manifest.csv`` (fails listing what is still missing)."""
    plan = plan_units(cfg)
    out = check_output(cfg, plan)
    summary = BuildSummary(units_total=len(plan.units))
    summarise(plan, out, summary, fingerprint(cfg), write=True)
    for line in summary.lines():
        log(line)
    if summary.units_pending:
        raise BuildError(f"{summary.units_pending} units are not built yet; run the missing "
                         "shards (same config) first", out)
    return summary


def _progress(units: list[Unit], enabled: bool):
    if not enabled:
        return units
    from tqdm import tqdm

    return tqdm(units, desc="MRI-DF units", unit="video", dynamic_ncols=True)


__all__ = ["AugmentConfig", "BuildConfig", "BuildError", "BuildSummary", "FaceConfig",
           "SourceConfig", "SplitConfig", "assign_splits", "build_mri_df", "check_output",
           "merge_shards", "parse_shard", "plan_units", "shard_units"]
