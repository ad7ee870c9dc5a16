"""Evaluate realism predictors on the test sets of a split and write the report.

Each predictor (the fine-tuned model, the frozen-feature baseline, a weighted ensemble) maps
clips to predicted MOS. For every test set the report holds PLCC, SRCC, RMSE, MAE and the
challenge score, plus their average over test sets. Files under ``<out>/``:

``report.json``       everything above, with split sizes and held-out identities/methods
``predictions.csv``   one row per (test set, video): true MOS and each predictor's score
``scatter_<name>.png`` predicted vs true MOS, one panel per test set
``retrieval.csv``     models with an explanation step (DA-CLIP): per test video, the top-K
                      retrieved training videos and their sentences (also in report.json)
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from detectors.realism import metrics
from detectors.realism.baseline import FrozenFeatureBaseline
from detectors.realism.clips import Clip
from detectors.realism.config import RealismConfig
from detectors.realism.data import RealismData
from detectors.realism.ensemble import normalise_weights, weighted_average
from detectors.realism.model_registry import model_kind
from detectors.realism.plots import save_scatter
from detectors.realism.predict import predict_clips
from mrigan.device import compute_record, resolve_precision
from mrigan.fileio import atomic_write_json, atomic_write_text

_log = logging.getLogger(__name__)

Predictor = Callable[[Sequence[Clip]], np.ndarray]


def model_predictor(model: torch.nn.Module, cfg: RealismConfig, device: torch.device) -> Predictor:
    """The test-time protocol: ``sampler.test_draws`` sequences per video, averaged."""

    def predict(clips: Sequence[Clip]) -> np.ndarray:
        return predict_clips(model, clips, cfg.sampler, inputs=cfg.model.inputs,
                             size=cfg.data.image_size, device=device, seed=cfg.train.seed,
                             precision=cfg.train.precision)

    return predict


def predict_sets(predictors: Mapping[str, Predictor], tests: Mapping[str, Sequence[Clip]]
                 ) -> dict[str, dict[str, np.ndarray]]:
    """``{predictor: {test set: predictions}}``."""
    return {name: {s: np.asarray(fn(clips), dtype=np.float64) for s, clips in tests.items()}
            for name, fn in predictors.items()}


def add_ensemble(preds: dict[str, dict[str, np.ndarray]], members: Sequence[str],
                 weights: Sequence[float], name: str = "ensemble") -> list[float]:
    """Add ``name``: the weighted average of ``members``' predictions; returns the weights used."""
    w = normalise_weights(weights, len(members))
    sets = preds[members[0]].keys()
    preds[name] = {s: weighted_average([preds[m][s] for m in members], w) for s in sets}
    return [float(v) for v in w]


def build_report(preds: Mapping[str, Mapping[str, np.ndarray]],
                 tests: Mapping[str, Sequence[Clip]]) -> dict[str, dict]:
    truth = {s: np.array([c.mos for c in clips]) for s, clips in tests.items()}
    return {name: metrics.multi_set_report({s: (truth[s], p[s]) for s in tests})
            for name, p in preds.items()}


def write_outputs(out_dir: str | os.PathLike, report: dict, preds: Mapping[str, Mapping[str, np.ndarray]],
                  tests: Mapping[str, Sequence[Clip]]) -> Path:
    out = Path(out_dir)
    atomic_write_json(out / "report.json", report)
    buf = io.StringIO()
    w = csv.writer(buf)
    names = list(preds)
    w.writerow(["test_set", "video", "method", "identity", "mos", *names])
    for s, clips in tests.items():
        for i, c in enumerate(clips):
            w.writerow([s, c.key, c.record.method, "+".join(c.record.identities), f"{c.mos:.6g}",
                        *(repr(float(preds[n][s][i])) for n in names)])
    atomic_write_text(out / "predictions.csv", buf.getvalue())
    if report.get("retrieval"):
        atomic_write_text(out / "retrieval.csv", retrieval_csv(report["retrieval"]))
    truth = {s: np.array([c.mos for c in clips]) for s, clips in tests.items()}
    for n in names:
        save_scatter({s: (truth[s], preds[n][s]) for s in tests}, out / f"scatter_{n}.png",
                     title=f"{n}: predicted vs true MOS")
    return out / "report.json"


def retrieval_csv(retrieval: Mapping[str, Sequence[dict]]) -> str:
    """One row per (test set, video, rank): the retrieved training video, its cosine
    similarity and its sentences joined with `` | ``."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["test_set", "video", "mos", "rank", "retrieved", "similarity", "sentences"])
    for s, rows in retrieval.items():
        for row in rows:
            for rank, hit in enumerate(row["retrieved"], 1):
                w.writerow([s, row["video"], f"{row['mos']:.6g}", rank, hit["video"],
                            f"{hit['similarity']:.6f}", " | ".join(hit["sentences"])])
    return buf.getvalue()


def data_summary(data: RealismData, cfg: RealismConfig) -> dict:
    return {"labels": list(cfg.data.labels), "videos": len(data.clips),
            "missing": {"count": len(data.missing), "keys": data.missing[:50]},
            "split": {"mode": cfg.data.split, "train": len(data.split.train),
                      "val": len(data.split.val),
                      "tests": {k: len(v) for k, v in data.split.tests.items()},
                      "held_out_identities": list(data.split.held_out_identities),
                      "held_out_methods": list(data.split.held_out_methods)}}


def summary_table(models_report: Mapping[str, dict]) -> str:
    """Plain-text table: one line per (predictor, test set) and the averages."""
    lines = [f"{'predictor':<12} {'test set':<16} {'n':>5} {'PLCC':>7} {'SRCC':>7} {'RMSE':>7} {'score':>7}"]
    for name, rep in models_report.items():
        rows = list(rep["sets"].items()) + [("average", rep["average"])]
        for s, r in rows:
            lines.append(f"{name:<12} {s:<16} {r['n']:>5} {r['plcc']:>7.3f} {r['srcc']:>7.3f} "
                         f"{r['rmse']:>7.3f} {r['score']:>7.3f}")
    return "\n".join(lines)


def evaluate_run(cfg: RealismConfig, model: torch.nn.Module, data: RealismData,
                 out_dir: str | os.PathLike, device: torch.device, *, baseline: bool = True,
                 members: Sequence[tuple[str, torch.nn.Module, RealismConfig]] = (),
                 weights: Sequence[float] = (), extra: Mapping | None = None,
                 log: Callable[[str], None] = _log.info) -> dict:
    """Predict every test set with the model (and baseline / ensemble), write the report."""

    tests = data.tests
    predictors: dict[str, Predictor] = {"model": model_predictor(model, cfg, device)}
    for name, member, member_cfg in members:
        predictors[name] = model_predictor(member.to(device), member_cfg, device)
    if baseline and cfg.baseline.regressor != "none":
        if len(data.train) < 2:
            log("baseline skipped: no training videos in this split")
        else:
            base = FrozenFeatureBaseline(cfg.model, cfg.baseline, cfg.sampler, cfg.data.image_size,
                                         device, seed=cfg.train.seed).fit(data.train)
            predictors["baseline"] = base.predict
    preds = predict_sets(predictors, tests)
    ensemble_info = None
    if members:
        used = add_ensemble(preds, ["model"] + [m[0] for m in members], weights)
        ensemble_info = {"members": ["model"] + [m[0] for m in members], "weights": used}
    kind = model_kind(cfg.model.name)
    retrieval = kind.explain(model, cfg, tests, device) if kind.explain else None
    report = {"run": cfg.name, **(dict(extra) if extra else {}), "data": data_summary(data, cfg),
              "model_name": cfg.model.name,
              "inputs": cfg.model.inputs, "backbone": cfg.model.backbone,
              "test_draws": cfg.sampler.test_draws, "ensemble": ensemble_info,
              "compute": compute_record(device, model=resolve_precision(device,
                                                                        cfg.train.precision)),
              "models": build_report(preds, tests)}
    if retrieval is not None:
        report["retrieval"] = retrieval
    path = write_outputs(out_dir, report, preds, tests)
    log(summary_table(report["models"]))
    log(f"report: {path}")
    return report
