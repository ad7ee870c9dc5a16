"""Evaluate a trained detector at frame and video level, on one or several test sets.

1. Score every face (or clip) of the validation set.
2. Choose the video rule's parameters on validation only (:func:`choose_rule`).
3. Only then read and score each test set and apply that choice unchanged to it; compute the
   paper's table at video and frame level with EER, AP and bootstrap 95% intervals (frames
   resampled by video).
4. Write ``report.json``, ``report.md``, per-video and per-face prediction CSVs, ROC and
   confusion-matrix PNGs (see :mod:`detectors.report`).

A face set is an MRI-DF root or a *face set* folder (the same ``manifest.csv`` without the
``mri`` column: labelled faces of videos that have no originals, e.g. DFDC's test set). A set's
``split`` picks rows of one split; an empty split takes every row (a folder that is a
validation or test set as a whole). With ``mri`` input and a generator but no
``input.mri_cache``, the MRIs are made once and kept in ``<out_dir>/mri_cache``, keyed by the
content of each face and of the generator (:func:`detectors.inputs.hashed_mri_input`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from detectors import report as report_io
from detectors.aggregate import (
    GridSearchResult,
    VideoResults,
    VideoScores,
    apply_rule,
    describe,
    get_rule,
    grid_search,
    group_by_video,
    validation_quantiles,
)
from detectors.config import AggregationConfig, EvalFaceSetConfig, EvaluateConfig
from detectors.data import load_rows, select_rows
from detectors.inference import load_detector
from detectors.inputs import InputAdapter, build_input, hashed_mri_input
from detectors.metrics import report_with_ci
from detectors.predict import predict_probs
from detectors.train import make_dataset
from mrigan.config import save_config, to_dict
from mrigan.device import compute_record, resolve_device, resolve_precision
from mrigan.outputs import check_output_dir

_log = logging.getLogger(__name__)


def choose_rule(rule: str, validation: Sequence[VideoScores], *,
                aggregation: AggregationConfig | None = None) -> GridSearchResult:
    """The rule's parameters, from validation videos only (grid search or fixed values)."""
    agg = aggregation or AggregationConfig(rule=rule)
    if agg.search:
        thresholds = tuple(sorted(set(agg.thresholds)
                                  | set(validation_quantiles(validation, agg.quantile_thresholds))))
        chosen = grid_search(rule, validation, thresholds=thresholds,
                             fractions=agg.fractions, objective=agg.objective)
    else:
        fixed = {"threshold": agg.frame_threshold}
        if "fraction" in get_rule(rule).defaults:
            fixed["fraction"] = agg.fake_fraction
        params = get_rule(rule).params(**fixed)
        value = (apply_rule(rule, validation, params).report()[agg.objective]
                 if validation else float("nan"))
        chosen = GridSearchResult(rule, agg.objective, params, float(value), [])
    return chosen


def score_test_sets(rule: str, validation: Sequence[VideoScores],
                    test_sets: Mapping[str, Sequence[VideoScores]], *,
                    aggregation: AggregationConfig | None = None,
                    ) -> tuple[GridSearchResult, dict[str, VideoResults]]:
    """Choose the rule's parameters on ``validation`` and apply them to every test set.

    The choice is made before any test set is touched, from a function that only receives
    validation videos; the test sets then get exactly ``chosen.params``.
    """
    chosen = choose_rule(rule, validation, aggregation=aggregation)
    frozen = dict(chosen.params)
    results = {name: apply_rule(rule, videos, frozen) for name, videos in test_sets.items()}
    return chosen, results


class _Scored:
    """The units of one face set with their probabilities."""

    def __init__(self, name: str, units: list[dict], probs: np.ndarray) -> None:
        self.name, self.units, self.probs = name, units, probs
        self.labels = np.array([u["label"] for u in units], dtype=np.int64)
        self.videos = group_by_video(units, probs)


def _set_root(face_set: EvalFaceSetConfig, default_root: str) -> str:
    root = face_set.root or default_root
    if not root:
        raise ValueError(f"face set {face_set.name!r}: no root (set its root or data_root)")
    return root


def _adapter(input_cfg, root: str, rows: list[dict], out_dir: Path, device, log) -> InputAdapter:
    """The input adapter of one face set; generated MRIs go to the content-hash cache."""
    if (input_cfg.name == "mri" and input_cfg.generator and not input_cfg.mri_cache
            and not input_cfg.manifest_mri):
        return hashed_mri_input(input_cfg.generator, root, rows, out_dir / "mri_cache",
                                device=device, batch_size=input_cfg.generator_batch, log=log)
    return build_input(input_cfg, root, device=device, rows=rows, log=log)


def _score_set(detector, face_set: EvalFaceSetConfig, default_root: str, cfg: EvaluateConfig,
               device, out_dir: Path, log) -> _Scored:
    root = _set_root(face_set, default_root)
    input_cfg = cfg.input or detector.config.input
    rows = select_rows(load_rows(root, require_mri=bool(input_cfg.manifest_mri)),
                       split=face_set.split or None, methods=face_set.methods,
                       sources=face_set.sources)
    if not rows:
        raise ValueError(f"{root}: face set {face_set.name!r} is empty (split "
                         f"{face_set.split!r}, methods {list(face_set.methods)}, sources "
                         f"{list(face_set.sources)})")
    adapter = _adapter(input_cfg, root, rows, out_dir, device, log)
    dataset = make_dataset(rows, adapter, detector.config)
    t0 = time.perf_counter()
    probs = predict_probs(detector.model, adapter, dataset, batch_size=cfg.batch_size,
                          device=device, precision=resolve_precision(device, cfg.precision))
    log(f"{face_set.name}: scored {len(dataset)} units of {len({u['video'] for u in dataset.units})}"
        f" videos in {time.perf_counter() - t0:.1f}s")
    return _Scored(face_set.name, dataset.units, probs)


def evaluate_detector(cfg: EvaluateConfig, *, log=_log.info) -> dict:
    """Run the whole evaluation; returns the report dict (also written to disk)."""

    if not cfg.checkpoint:
        raise ValueError("evaluate: set checkpoint (a train-detector best.pt)")
    device = resolve_device(cfg.device)
    detector = load_detector(cfg.checkpoint, device=device, precision="fp32",
                             batch_size=cfg.batch_size)
    if cfg.input is not None:
        detector.config = replace(detector.config, input=cfg.input)
    default_root = cfg.data_root or detector.config.data.root
    out_dir = Path(cfg.out_dir) if cfg.out_dir else (
        Path(cfg.checkpoint).resolve().parent.parent / "reports" / cfg.name)
    check_output_dir(out_dir, [_set_root(s, default_root)
                               for s in (cfg.validation, *cfg.test_sets)])
    out_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out_dir / "config.yaml")

    # validation first, the rule fixed from it alone; no test face is read before that
    validation = _score_set(detector, cfg.validation, default_root, cfg, device, out_dir, log)
    agg = cfg.aggregation
    chosen = choose_rule(agg.rule, validation.videos, aggregation=agg)
    frozen = dict(chosen.params)
    log(f"video rule {agg.rule} chosen on validation ({agg.objective} "
        f"{chosen.value:.4f}): {chosen.params}")
    tests: dict[str, _Scored] = {}
    per_set: dict[str, VideoResults] = {}
    for t in cfg.test_sets:
        tests[t.name] = _score_set(detector, t, default_root, cfg, device, out_dir, log)
        per_set[t.name] = apply_rule(agg.rule, tests[t.name].videos, frozen)

    results = {
        "detector": {"checkpoint": str(cfg.checkpoint), "backbone": detector.config.model.backbone,
                     "temporal": detector.config.model.temporal,
                     "input": (cfg.input or detector.config.input).name,
                     "image_size": detector.config.data.image_size},
        "aggregation": {"rule": agg.rule, "params": chosen.params, "searched": agg.search,
                        "objective": agg.objective, "validation_value": chosen.value,
                        "description": describe(agg.rule, **chosen.params),
                        "ties": sum(row[agg.objective] == chosen.value for row in chosen.table),
                        "grid": chosen.table},
        "validation": {"videos": len(validation.videos), "units": len(validation.units),
                       "root": _set_root(cfg.validation, default_root),
                       "split": cfg.validation.split or "(all rows)"},
        "frame_threshold": cfg.frame_threshold,
        "compute": compute_record(device, detector=resolve_precision(device, cfg.precision)),
        "test_sets": {},
        "config": to_dict(cfg),
    }
    for t in cfg.test_sets:
        name, scored, video = t.name, tests[t.name], per_set[t.name]
        groups = [u["video"] for u in scored.units]
        results["test_sets"][name] = {
            "root": _set_root(t, default_root), "split": t.split or "(all rows)",
            "videos": len(video.videos), "units": len(scored.units),
            "video": report_with_ci(video.labels, video.scores, y_pred=video.fake,
                                    n_boot=cfg.bootstrap),
            "frame": report_with_ci(scored.labels, scored.probs, cfg.frame_threshold,
                                    groups=groups, n_boot=cfg.bootstrap),
        }
        report_io.write_set_outputs(out_dir, name, scored.units, scored.probs, video,
                                    cfg.frame_threshold)
    report_io.write_reports(out_dir, results)
    log(f"reports: {out_dir / 'report.md'}")
    results["out_dir"] = str(out_dir)
    return results
