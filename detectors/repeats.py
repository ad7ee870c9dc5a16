"""Repeated-run protocols: N seeded runs of one experiment, resumable, one summary table.

The two protocols of the papers this library serves:

* ``seeds`` - the Xception/LSTM study ("repeating each configuration five times", reporting the
  mean over the runs and the best run): run ``k`` trains with ``train.seed + k`` on the same
  data split.
* ``splits`` - DREAM ("we repeat the train and test process 10 times using different splits to
  obtain the average performance", reported as mean +- std): run ``k`` also draws its random
  train / val / test split with ``data.seed + k``.

A series lives in one folder::

    <series>/run0/ ... run<N-1>/   each run's own outputs (checkpoints, reports)
    <series>/run<k>/repeat.json    that run's settings fingerprint, status and metrics
    <series>/repeats.json          per-run rows, mean, std, best (rewritten after every run)
    <series>/repeats.md            the same as one Markdown table

Resume: a run whose ``repeat.json`` says ``done`` with the fingerprint of the settings asked
now is skipped and its metrics reused; a run that was started and not finished continues (its
trainer resumes from its ``last.pt``); a run folder written with other settings is refused
(:class:`RepeatError` naming the file and the keys that differ), never overwritten. Raising
``--repeats`` from 5 to 10 therefore runs only runs 5..9.

Summary: ``mean`` is ``numpy.mean`` over the runs; ``std`` is the sample standard deviation
(``numpy.std(ddof=1)``, n - 1: the usual reading of "mean +- std over runs"; DREAM does not
say which it used; ``None`` for a single run); ``best`` is the highest value, or the lowest for
error metrics (names ending in ``eer``, ``rmse``, ``mae`` or ``loss``), with the run it came from.
NaN metrics (e.g. an AUC on a one-class set) make the mean and std NaN, as in numpy.

:func:`repeat_detector` applies the ``seeds`` protocol to ``train_detector`` + ``evaluate``;
the realism series is :func:`detectors.realism.repeats.repeat_realism`.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from detectors.config import DetectorConfig, EvaluateConfig
from detectors.data import load_rows
from detectors.evaluate import evaluate_detector
from detectors.train import train_detector
from mrigan import distributed
from mrigan import fingerprint as settings_fp
from mrigan.errors import MriganError
from mrigan.fileio import atomic_write_json, atomic_write_text

_log = logging.getLogger(__name__)

PROTOCOLS = ("seeds", "splits")
STATE_FILE = "repeat.json"
_LOWER_IS_BETTER = ("eer", "rmse", "mae", "loss")
#: Detector metrics kept per test set and level (``binary_report`` keys).
DETECTOR_METRICS = ("auc", "accuracy", "balanced_accuracy", "f1", "eer", "ap")

RunFn = Callable[[int, Path], tuple[dict[str, float], dict[str, Any]]]


class RepeatError(MriganError, ValueError):
    """A repeat series that cannot run as asked (bad N, protocol, or a run folder written with
    other settings)."""


def settings_of(cfg: Any, ignore: Sequence[str] = ()) -> dict:
    """What a run of ``cfg`` computes from: the config less the fields its metadata says do
    not shape the output (:mod:`mrigan.fingerprint`: names, folders, resume, workers, threads,
    log cadence, time budget) and the dotted keys in ``ignore``."""
    return settings_fp.settings(cfg, ignore=ignore)


def fingerprint(settings: Mapping[str, Any]) -> str:
    """SHA-256 of the settings as canonical JSON."""
    return settings_fp.digest(settings)


def _differences(old: Mapping, new: Mapping) -> list[str]:
    a, b = settings_fp.flat(old), settings_fp.flat(new)
    return [f"{k} ({a.get(k, '-')} -> {b.get(k, '-')})" for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k)]


def lower_is_better(metric: str) -> bool:
    return metric.rsplit(".", 1)[-1].endswith(_LOWER_IS_BETTER)


def summarise(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``{metrics, mean, std, best}`` over the rows' ``metrics`` (see the module docstring)."""
    names: list[str] = []
    for row in rows:
        names += [m for m in row["metrics"] if m not in names]
    mean, std, best = {}, {}, {}
    for m in names:
        v = np.array([float(r["metrics"].get(m, math.nan)) for r in rows], dtype=np.float64)
        mean[m] = float(np.mean(v))
        std[m] = float(np.std(v, ddof=1)) if len(v) > 1 else None
        if np.isnan(v).all():
            best[m] = {"value": None, "run": None}
        else:
            i = int(np.nanargmin(v) if lower_is_better(m) else np.nanargmax(v))
            best[m] = {"value": float(v[i]), "run": int(rows[i]["run"])}
    return {"metrics": names, "mean": mean, "std": std, "best": best}


def _fmt(v: Any) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


def markdown_table(rows: Sequence[Mapping[str, Any]], summary: Mapping[str, Any],
                   columns: Sequence[str] | None = None) -> str:
    """One table: a row per run, then mean, std and best (value and run); ``columns`` picks
    the metrics shown (default: all; ``repeats.json`` always holds all)."""
    cols = [c for c in (columns or summary["metrics"]) if c in summary["metrics"]]
    lines = ["| run | seed | split seed | " + " | ".join(cols) + " |",
             "|---|---|---|" + "---|" * len(cols)]
    for r in rows:
        split = "-" if r.get("split_seed") is None else str(r["split_seed"])
        lines.append(f"| {r['run']} | {r['seed']} | {split} | "
                     + " | ".join(_fmt(r["metrics"].get(c)) for c in cols) + " |")
    lines.append("| mean | | | " + " | ".join(_fmt(summary["mean"][c]) for c in cols) + " |")
    lines.append("| std | | | " + " | ".join(_fmt(summary["std"][c]) for c in cols) + " |")
    lines.append("| best | | | " + " | ".join(
        f"{_fmt(summary['best'][c]['value'])} (run {summary['best'][c]['run']})"
        if summary["best"][c]["run"] is not None else "n/a" for c in cols) + " |")
    return "\n".join(lines)


def write_summary(series: Path, rows: Sequence[Mapping[str, Any]], *, n: int, protocol: str,
                  columns: Sequence[str] | None = None, title: str = "") -> dict[str, Any]:
    summary = summarise(rows)
    doc = {"protocol": protocol, "n_planned": n, "n_done": len(rows), "std_ddof": 1,
           "runs": list(rows), **summary}
    atomic_write_json(series / "repeats.json", doc)
    head = (f"# {title or series.name}: {len(rows)} of {n} runs, protocol {protocol}\n\n"
            "mean over runs; std with ddof=1 (n-1); best = max (min for eer/rmse/mae/loss).\n\n")
    atomic_write_text(series / "repeats.md", head + markdown_table(rows, summary, columns) + "\n")
    return doc


def run_series(series: str | Path, settings: Sequence[Mapping[str, Any]], run_one: RunFn, *,
               protocol: str, seeds: Sequence[int], split_seeds: Sequence[int | None],
               columns: Sequence[str] | None = None, title: str = "",
               log: Callable[[str], None] = _log.info) -> dict[str, Any]:
    """Run ``run_one(k, series / f"run{k}")`` for every ``k`` not already done, resumably.

    ``settings[k]`` is what run ``k`` computes from (its fingerprint decides skip / refuse);
    ``run_one`` returns ``(metrics, info)``: numbers to summarise and anything else to keep.
    Returns the summary document (also in ``repeats.json`` / ``repeats.md``).

    Under torchrun every rank calls this and ``run_one`` (which may train with DDP); rank 0
    alone reads the run states, decides what to skip or refuse (the other ranks receive its
    decision, so they never disagree or race on the files), writes every file and logs; the
    other ranks' ``run_one`` results are not used and they return an empty document.
    """
    n = len(settings)
    if n < 1:
        raise RepeatError(f"--repeats must be >= 1, got {n}")
    if protocol not in PROTOCOLS:
        raise RepeatError(f"repeat protocol {protocol!r}: use one of {', '.join(PROTOCOLS)}")
    series = Path(series)
    main = distributed.is_main_process()
    say = log if main else (lambda _line: None)
    plan: tuple[str, Any] = ("ok", None)
    if main:
        try:
            plan = ("ok", _plan_series(series, settings))
        except RepeatError as exc:
            plan = ("error", (exc.problem, exc.path))
    plan = distributed.broadcast_object(plan)
    if plan[0] == "error":
        raise RepeatError(*plan[1])
    rows: list[dict[str, Any]] = []
    doc: dict[str, Any] = {}
    for k, (action, fp, done_row) in enumerate(plan[1]):
        folder = series / f"run{k}"
        state_file = folder / STATE_FILE
        if action == "skip":
            say(f"repeat {k + 1}/{n}: done before (same settings), skipped: {folder}")
            rows.append(done_row)
            if main:
                doc = write_summary(series, rows, n=n, protocol=protocol, columns=columns,
                                    title=title)
            continue
        if action == "continue":
            say(f"repeat {k + 1}/{n}: continuing the unfinished run in {folder}")
        else:
            say(f"repeat {k + 1}/{n}: seed {seeds[k]}"
                + (f", split seed {split_seeds[k]}" if split_seeds[k] is not None else "")
                + f" -> {folder}")
        base = {"run": k, "fingerprint": fp, "settings": dict(settings[k])}
        if main:
            atomic_write_json(state_file, {**base, "status": "running"})
        metrics, info = run_one(k, folder)
        distributed.barrier()  # every rank has finished run k before anyone starts run k + 1
        if not main:
            continue
        row = {"run": k, "seed": int(seeds[k]), "split_seed": split_seeds[k],
               "folder": folder.name, "metrics": {m: float(v) for m, v in metrics.items()},
               "info": info}
        atomic_write_json(state_file, {**base, "status": "done", "row": row})
        rows.append(row)
        doc = write_summary(series, rows, n=n, protocol=protocol, columns=columns, title=title)
    if main:
        log(markdown_table(rows, summarise(rows), columns))
        log(f"summary: {series / 'repeats.md'} and {series / 'repeats.json'}")
    return doc


def _plan_series(series: Path, settings: Sequence[Mapping[str, Any]]
                 ) -> list[tuple[str, str, dict[str, Any] | None]]:
    """``(action, fingerprint, done row)`` per run from the run folders as they are now:
    ``skip`` (done with these settings), ``continue`` (started with these settings), ``new``;
    a run folder made with other settings, or not by a series, raises :class:`RepeatError`."""
    series.mkdir(parents=True, exist_ok=True)
    plan = []
    for k, run_settings in enumerate(settings):
        folder = series / f"run{k}"
        state_file = folder / STATE_FILE
        fp = fingerprint(run_settings)
        state = _read_state(state_file) if state_file.is_file() else None
        if state is not None:
            if state.get("fingerprint") != fp:
                diff = _differences(state.get("settings", {}), run_settings)
                raise RepeatError(
                    f"run {k} of this series was made with other settings "
                    f"({'; '.join(diff[:5]) or 'fingerprint differs'}); use another output "
                    f"folder or delete {folder}", state_file)
            done = state.get("status") == "done"
            plan.append(("skip", fp, state["row"]) if done else ("continue", fp, None))
        elif folder.is_dir() and any(folder.iterdir()):
            raise RepeatError(f"exists without {STATE_FILE}, not a run of a repeat "
                              "series; use another output folder", folder)
        else:
            plan.append(("new", fp, None))
    return plan


def _read_state(path: Path) -> dict[str, Any]:
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RepeatError(f"unreadable repeat state ({exc}); delete the run folder to "
                          "redo that run", path) from exc
    if not isinstance(state, dict):
        raise RepeatError("not a repeat state file", path)
    return state


# ----------------------------------------------------------------------------------------------
# detectors


def detector_run_config(cfg: DetectorConfig, k: int) -> DetectorConfig:
    """Run ``k`` of a detector series: ``<out_dir>/<name>/run<k>``, seed ``train.seed + k``,
    resuming its own ``last.pt`` when killed."""
    return replace(cfg, out_dir=str(Path(cfg.out_dir) / cfg.name), name=f"run{k}",
                   train=replace(cfg.train, seed=cfg.train.seed + k, resume=True))


def repeat_detector(cfg: DetectorConfig, n: int, *, evaluate: EvaluateConfig | None = None,
                    log: Callable[[str], None] = _log.info) -> dict[str, Any]:
    """``n`` runs of ``train_detector`` (protocol ``seeds``), each followed by
    ``evaluate_detector`` on its ``best.pt`` when the data has the evaluation's test split.

    Metrics per run: ``val_auc`` (best validation AUC) and, per test set,
    ``<set>.video.<m>`` / ``<set>.frame.<m>`` for ``m`` in :data:`DETECTOR_METRICS`.
    ``evaluate`` is the evaluation template (its checkpoint and out_dir are set per run;
    default: :class:`EvaluateConfig` with ``bootstrap=0`` - the series is the spread).
    The ``splits`` protocol is not offered: the evaluation reads the manifest's fixed test
    split, so redrawing train/val per run would leak nothing but also test nothing new.
    """
    ev = evaluate or EvaluateConfig(bootstrap=0)
    series = Path(cfg.out_dir) / cfg.name
    configs = [detector_run_config(cfg, k) for k in range(n)]
    eval_settings = settings_of(ev, ignore=("checkpoint", "device"))  # set per run
    settings = [{"protocol": "seeds", "run": k, "config": settings_of(c),
                 "evaluate": eval_settings} for k, c in enumerate(configs)]

    def run_one(k: int, folder: Path) -> tuple[dict[str, float], dict[str, Any]]:
        result = train_detector(configs[k], log=log)  # every rank (DDP under torchrun)
        if not distributed.is_main_process():  # rank 0 evaluates; the others wait at a barrier
            return {}, {}
        with distributed.alone():  # as a one-process job: no sharding, no collective
            return evaluate_run(k, folder, result)

    def evaluate_run(k: int, folder: Path, result) -> tuple[dict[str, float], dict[str, Any]]:
        metrics = {"val_auc": math.nan if result.best_value is None else result.best_value}
        info = {"best_epoch": result.best_epoch, "steps": result.step,
                "checkpoint": str(result.best_checkpoint)}
        root = ev.data_root or cfg.data.root
        splits = {r["split"] for r in load_rows(root)}
        wanted = [t for t in ev.test_sets if t.split in splits]
        if not wanted:
            log(f"repeat {k + 1}: no test split {[t.split for t in ev.test_sets]} in {root}: "
                "validation metrics only")
            return metrics, info
        report = evaluate_detector(replace(ev, checkpoint=str(result.best_checkpoint), test_sets=tuple(wanted),
                                           out_dir=str(folder / "reports" / ev.name)), log=log)
        for name, res in report["test_sets"].items():
            for level in ("video", "frame"):
                for m in DETECTOR_METRICS:
                    metrics[f"{name}.{level}.{m}"] = float(res[level][m])
        info["report"] = report["out_dir"]
        return metrics, info

    columns = ["val_auc"] + [f"{t.name}.{m}" for t in ev.test_sets for m in (
        "video.auc", "video.accuracy", "video.f1", "video.eer", "frame.auc", "frame.eer")]
    return run_series(series, settings, run_one, protocol="seeds",
                      seeds=[c.train.seed for c in configs], split_seeds=[None] * n,
                      columns=columns, title=cfg.name, log=log)
