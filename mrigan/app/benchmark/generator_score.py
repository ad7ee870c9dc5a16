"""Stage ``eval_mri_mean``: the generator alone as a detector (no trained detector at all).

A face's score is the mean of the exported generator's MRI over the face - exactly what
``mrigan analyze`` does when no ``--detector`` is given (the analyst's default path). The
video rule (``evaluate.rule``, the paper's count rule) and its face threshold are grid-searched
on the validation identities' videos only (``detectors.evaluate.choose_rule``, the same
machinery as the detectors' evaluation, with a threshold grid on the MRI's scale instead of on
probabilities), then applied unchanged to each test set. So this row measures whether the
generator by itself tells real from fake videos of people it never saw.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import torch

from detectors import report as report_io
from detectors.aggregate import apply_rule, describe, group_by_video
from detectors.config import AggregationConfig
from detectors.data import load_rows
from detectors.evaluate import choose_rule
from detectors.metrics import binary_report, bootstrap_ci, report_with_ci
from mrigan.app.benchmark.config import BenchmarkConfig
from mrigan.app.benchmark.evaluation import video_columns
from mrigan.fileio import read_image
from mrigan.inference import MRIGenerator

_log = logging.getLogger(__name__)

#: face thresholds on the mean MRI searched on validation (a real face's mean MRI is near 0;
#: the analyst's default threshold is 0.08)
MRI_THRESHOLDS = tuple(float(t) for t in np.round(np.arange(0.01, 0.301, 0.01), 2))


def aggregation(cfg: BenchmarkConfig) -> AggregationConfig:
    """The video rule's search: ``evaluate.rule`` over :data:`MRI_THRESHOLDS` (plus the
    library's validation-quantile thresholds); part of the stage's settings."""
    return AggregationConfig(rule=cfg.evaluate.rule, thresholds=MRI_THRESHOLDS)


@torch.no_grad()
def face_scores(gen: MRIGenerator, root: str, batch_size: int) -> tuple[list[dict], np.ndarray]:
    """Every face of a face set (all rows) with its mean predicted MRI."""
    rows = load_rows(root, require_mri=False)
    scores = []
    for start in range(0, len(rows), batch_size):
        faces = [read_image(Path(root) / r["image"]) for r in rows[start:start + batch_size]]
        scores += [float(m.mean()) for m in gen.predict(faces)]
    return rows, np.asarray(scores, dtype=np.float64)


def mri_mean_stage(cfg: BenchmarkConfig, generator: str, validation: dict,
                   tests: dict[str, dict], folder: Path, log=_log.info) -> dict:
    """``validation`` / ``tests``: face-set stage results (``root``). Same result layout as
    :func:`mrigan.app.benchmark.evaluation.eval_stage`, so the report treats it as a row."""
    gen = MRIGenerator.load(generator, device=cfg.device, batch_size=cfg.evaluate.batch_size)
    agg = aggregation(cfg)
    units, scores = face_scores(gen, validation["root"], cfg.evaluate.batch_size)
    chosen = choose_rule(agg.rule, group_by_video(units, scores), aggregation=agg)
    frozen = dict(chosen.params)  # fixed from validation alone, before any test face is read
    log(f"mri_mean: video rule {agg.rule} chosen on validation ({agg.objective} "
        f"{chosen.value:.4f}): {frozen}")
    out_dir = folder / "report"
    out: dict = {"aggregation": {"rule": agg.rule, "params": chosen.params,
                                 "objective": agg.objective, "validation_value": chosen.value,
                                 "description": describe(agg.rule, **chosen.params)
                                 + f" (a face's score: its mean MRI; face threshold "
                                   f"{chosen.params['threshold']:g})"},
                 "validation_videos": len({u["video"] for u in units}), "test_sets": {},
                 "generator": generator}
    for name, t in tests.items():
        units, scores = face_scores(gen, t["root"], cfg.evaluate.batch_size)
        video = apply_rule(agg.rule, group_by_video(units, scores), frozen)
        rep = report_with_ci(video.labels, video.scores, y_pred=video.fake,
                             n_boot=cfg.evaluate.bootstrap)
        labels = np.array([u["label"] for u in units])
        report_io.write_set_outputs(out_dir, name, units, scores, video, frozen["threshold"])
        out["test_sets"][name] = {
            "videos": len(video.videos), "faces": len(units), **video_columns(rep),
            "frame_auc": binary_report(labels, scores)["auc"],
            "predictions": str(out_dir / "predictions" / f"{name}_videos.csv")}
    return out



def mean_face_scores(faces_csv: str | Path) -> dict[str, tuple[bool, float]]:
    """video -> (is fake, mean ``p_fake`` of its faces) from a set's ``<name>_faces.csv``: a
    threshold-free video score."""
    per: dict[str, list] = {}
    with open(faces_csv, newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            per.setdefault(r["video"], [r["label"] == "fake", []])[1].append(float(r["p_fake"]))
    return {video: (fake, float(np.mean(scores))) for video, (fake, scores) in per.items()}


def video_mean_auc(faces_csv: Path, n_boot: int = 1000, seed: int = 0) -> dict:
    """Threshold-free: AUC of each video's mean face score (:func:`mean_face_scores`) with its
    bootstrap 95% interval over videos."""
    per = mean_face_scores(faces_csv)
    y = np.array([fake for fake, _ in per.values()], dtype=np.int8)
    score = np.array([mean for _, mean in per.values()])
    ci = bootstrap_ci(y, score, n_boot=n_boot, metrics=("auc",), seed=seed).get("auc")
    return {"auc": binary_report(y, score)["auc"], "ci95": list(ci) if ci else None,
            "videos": len(y), "fake_videos": int(y.sum())}


__all__ = ["MRI_THRESHOLDS", "aggregation", "face_scores", "mean_face_scores",
           "mri_mean_stage", "video_mean_auc"]
