"""The one build loop of the unit builders (MRI-DF and labelled face sets).

Both builders plan *units* (``build_plan.Unit``), then run this loop: refuse an output folder
inside the inputs, take the shard's writer lock and mark the shard incomplete
(``mrigan.outputs.BatchRun``: ``INCOMPLETE.json`` until the shard ends, left naming the units
not built when it is cut short), check the settings fingerprint, save the
config, build every unit of the shard that has no done record (``build_records``), and join
the records into ``manifest.csv`` + ``summary.json`` once no unit is pending. What a unit
becomes is the builder's ``process(unit) -> record`` function; resume, shards, locks,
fingerprints and the skip-and-count summary are the same mechanism for both.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from datasets_builders.build_config import BuildError
from datasets_builders.build_plan import Plan, Unit, shard_units
from datasets_builders.build_records import (
    BuildLock,
    BuildSummary,
    check_fingerprint,
    fingerprint,
    load_record,
    save_record,
    summarise,
)
from datasets_builders.build_workers import unit_results
from mrigan.config import save_config
from mrigan.mri_df_format import ManifestError
from mrigan.outputs import BatchRun, OutputLocationError, check_output_dir

_log = logging.getLogger(__name__)


def check_output(cfg, plan: Plan | None = None) -> Path:
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


def shard_config_name(cfg) -> str:
    return "config.yaml" if cfg.shard == "1/1" else f"config.shard-{cfg.shard_tag}.yaml"


#: a record key the process function may use for what is not part of the record (timings):
#: popped and handed to ``on_result`` before the record is saved
RESULT_EXTRA = "_extra"


def run_units(cfg, plan: Plan, start: Callable[[Path], Callable[[Unit], dict]], *,
              restart: bool, summary: BuildSummary, desc: str, log=_log.info,
              finish: Callable[[BuildSummary], None] | None = None,
              on_result: Callable[[object], None] | None = None) -> BuildSummary:
    """Build the shard's units of ``plan`` under ``cfg.out`` (see the module doc).

    ``start(out)`` is called once the folder is locked and checked (in each worker process
    when ``cfg.workers`` > 1; ``build_workers``), and returns the builder's
    ``process(unit) -> record``; ``finish(summary)`` adds the builder's own totals (timings)
    before the summary is written.
    """
    out = check_output(cfg, plan)
    mine = shard_units(plan.units, cfg.shard)
    out.mkdir(parents=True, exist_ok=True)
    fp = fingerprint(cfg)
    summary.units_total, summary.units_in_shard = len(plan.units), len(mine)
    suffix = "" if cfg.shard == "1/1" else f".shard-{cfg.shard_tag}"
    with BatchRun(out, f"build ({desc})", lock=BuildLock(out, cfg.shard_tag), suffix=suffix) as batch:
        check_fingerprint(out, fp, restart=restart)
        save_config(cfg, out / shard_config_name(cfg))
        pending = []
        for unit in mine:
            if load_record(out, unit, fp) is not None:
                summary.units_resumed += 1
            else:
                pending.append(unit)
        batch.plan(u.key for u in pending)
        results = unit_results(pending, start, out, getattr(cfg, "workers", 1))
        bar = _progress(results, cfg.progress, desc, len(pending))
        rows = 0
        written: set[str] = set()
        for unit, record in bar:
            extra = record.pop(RESULT_EXTRA, None)
            if on_result is not None:
                on_result(extra)
            for row in record["rows"]:  # units built in other processes: checked here
                if row["image"] in written:
                    raise ManifestError(f"{row['image']} written twice: two inputs map to video "
                                        f"id {row['video']!r}", out)
                written.add(row["image"])
            save_record(out, unit, record, fp)
            batch.done(unit.key)
            summary.units_built += 1
            rows += len(record["rows"])
            if hasattr(bar, "set_postfix"):
                bar.set_postfix({summary.row_word: rows}, refresh=False)
        if finish is not None:
            finish(summary)
        summarise(plan, out, summary, fp, write=True)
    for line in summary.lines():
        log(line)
    return summary


def merge_records(cfg, plan: Plan, summary: BuildSummary, *, log=_log.info) -> BuildSummary:
    """Join the shards' records into ``manifest.csv`` (fails listing what is still missing)."""
    out = check_output(cfg, plan)
    summary.units_total = len(plan.units)
    summarise(plan, out, summary, fingerprint(cfg), write=True)
    for line in summary.lines():
        log(line)
    if summary.units_pending:
        raise BuildError(f"{summary.units_pending} units are not built yet; run the missing "
                         "shards (same config) first", out)
    return summary


def _progress(results, enabled: bool, desc: str, total: int):
    if not enabled:
        return results
    from tqdm import tqdm

    return tqdm(results, desc=desc, unit="video", dynamic_ncols=True, total=total)


__all__ = ["RESULT_EXTRA", "check_output", "merge_records", "run_units", "shard_config_name"]
