"""Repeated realism runs: DREAM's protocol (10 random splits, mean +- std) or new seeds only.

The clips are read (and their MRIs generated) once; run ``k`` re-splits them with
``data.seed + k`` (protocol ``splits``) or keeps the split of ``data.seed`` (``seeds``), trains
with ``train.seed + k`` in ``<out>/run<k>/`` and writes that run's test report there. The series
bookkeeping (skip finished runs, resume the unfinished one, summary table) is
:func:`detectors.repeats.run_series`.

Per-run metrics: ``<predictor>.<test set>.<m>`` and ``<predictor>.average.<m>`` for ``m`` in
plcc, srcc, rmse, mae, score; predictors are ``model``, ``baseline`` (unless disabled) and the
ensemble members. The Markdown table shows the averages; ``repeats.json`` holds every metric.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from detectors.realism.config import RealismConfig
from detectors.realism.data import RealismData
from detectors.realism.evaluate import evaluate_run
from detectors.realism.splits import make_split
from detectors.realism.train import train_regressor
from detectors.repeats import RepeatError, run_series, settings_of

_log = logging.getLogger(__name__)

METRICS = ("plcc", "srcc", "rmse", "mae", "score")


def resplit(data: RealismData, cfg: RealismConfig, seed: int) -> RealismData:
    """The same clips split again as ``cfg.data`` says, with ``seed``."""
    d = cfg.data
    split = make_split([c.record for c in data.clips], d.split, d.test_fraction,
                       d.val_fraction, seed, d.test_identities, d.test_methods)
    return RealismData(data.clips, split, data.missing)


def realism_run_config(cfg: RealismConfig, k: int, protocol: str) -> RealismConfig:
    """Run ``k``: ``train.seed + k``; with ``splits`` also ``data.seed + k``; resumable."""
    data = replace(cfg.data, seed=cfg.data.seed + k) if protocol == "splits" else cfg.data
    return replace(cfg, data=data, train=replace(cfg.train, seed=cfg.train.seed + k, resume=True))


def train_and_evaluate(cfg: RealismConfig, data: RealismData, out: Path, device: torch.device, *,
                       baseline: bool = True, members: Sequence = (),
                       log: Callable[[str], None] = _log.info) -> dict:
    """One run of ``mrigan train-realism``: train on the split, write ``<out>/reports/``."""
    result = train_regressor(cfg, data.train, data.val, out, log=log)
    log(f"best epoch {result.best_epoch}: {result.best_checkpoint}")
    return evaluate_run(cfg, result.model, data, out / "reports", device, baseline=baseline,
                        members=members, weights=cfg.ensemble.weights, log=log,
                        extra={"checkpoint": str(result.best_checkpoint),
                               "best_epoch": result.best_epoch, "history": result.history})


def report_metrics(report: dict) -> dict[str, float]:
    """Flat ``<predictor>.<set>.<metric>`` numbers of an :func:`evaluate_run` report."""
    out = {}
    for name, rep in report["models"].items():
        for s, r in [*rep["sets"].items(), ("average", rep["average"])]:
            for m in METRICS:
                out[f"{name}.{s}.{m}"] = float(r[m])
    return out


def repeat_realism(cfg: RealismConfig, data: RealismData, out: str | Path, device: torch.device,
                   n: int, *, protocol: str = "splits", baseline: bool = True,
                   members: Sequence = (), log: Callable[[str], None] = _log.info) -> dict[str, Any]:
    """``n`` train + evaluate runs of ``cfg`` on ``data``'s clips; returns the summary."""
    if protocol == "splits" and cfg.data.split == "none":
        raise RepeatError("--repeat-protocol splits needs data.split other than none")
    configs = [realism_run_config(cfg, k, protocol) for k in range(n)]
    settings = [{"protocol": protocol, "run": k, "config": settings_of(c),
                 "baseline": baseline, "members": [m[0] for m in members]}
                for k, c in enumerate(configs)]

    def run_one(k: int, folder: Path) -> tuple[dict[str, float], dict[str, Any]]:
        c = configs[k]
        run_data = resplit(data, c, c.data.seed) if protocol == "splits" else data
        report = train_and_evaluate(c, run_data, folder, device, baseline=baseline,
                                    members=members, log=log)
        info = {"best_epoch": report["best_epoch"], "checkpoint": report["checkpoint"],
                "split": report["data"]["split"]}
        return report_metrics(report), info

    columns = [f"{p}.average.{m}" for p in ["model", "baseline", *(m[0] for m in members)]
               for m in ("plcc", "srcc", "rmse", "score")]
    return run_series(out, settings, run_one, protocol=protocol,
                      seeds=[c.train.seed for c in configs],
                      split_seeds=[c.data.seed if protocol == "splits" else None
                                   for c in configs],
                      columns=columns, title=cfg.name, log=log)
