"""Evaluation outputs on disk: JSON + Markdown reports, prediction CSVs, PNG figures.

Layout of an evaluation folder::

    report.json  report.md  config.yaml
    predictions/<set>_videos.csv   one row per video: label, faces, score, verdict
    predictions/<set>_faces.csv    one row per face (or clip): its video, label, P(fake)
    plots/<set>_roc.png            frame- and video-level ROC curves
    plots/<set>_confusion_{video,frame}.png
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from detectors.aggregate import VideoResults
from detectors.metrics import TABLE_METRICS, binary_report
from detectors.plots import save_confusion, save_roc
from mrigan.fileio import atomic_write_json, atomic_write_text

#: Row titles of the paper's table, in its order, then the threshold-free metrics.
METRIC_TITLES = {
    "tpr": "TPR (recall)", "fnr": "FNR", "fpr": "FPR", "tnr": "TNR", "accuracy": "Accuracy",
    "balanced_accuracy": "Balanced accuracy", "f1": "F1", "precision": "Precision",
    "specificity": "Specificity", "auc": "ROC AUC", "eer": "EER", "ap": "Average precision",
}
assert tuple(METRIC_TITLES) == TABLE_METRICS


def _csv_text(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def write_set_outputs(out_dir: Path, name: str, units: Sequence[dict], probs: np.ndarray,
                      video: VideoResults, frame_threshold: float) -> None:
    meta = {v: u for u, v in ((u, u["video"]) for u in units)}
    rows = []
    for i, vid in enumerate(video.videos):
        m = meta.get(vid, {})
        rows.append([vid, "fake" if video.labels[i] else "real", m.get("method", ""),
                     m.get("identity", ""), int(video.n_units[i]), f"{video.scores[i]:.6f}",
                     "fake" if video.fake[i] else "real",
                     "yes" if bool(video.fake[i]) == bool(video.labels[i]) else "no"])
    atomic_write_text(out_dir / "predictions" / f"{name}_videos.csv", _csv_text(
        ["video", "label", "method", "identity", "faces", "score", "verdict", "correct"], rows))
    face_rows = [[u["video"], u.get("image", ""), u.get("frame", ""), u.get("track", ""),
                  "fake" if u["label"] else "real", f"{p:.6f}"] for u, p in zip(units, probs,
                                                                                  strict=True)]
    atomic_write_text(out_dir / "predictions" / f"{name}_faces.csv", _csv_text(
        ["video", "image", "frame", "track", "label", "p_fake"], face_rows))
    labels = np.array([u["label"] for u in units])
    save_roc({"frame": (labels, probs), "video": (video.labels, video.scores)},
             out_dir / "plots" / f"{name}_roc.png", title=f"ROC - {name}")
    save_confusion(binary_report(video.labels, video.scores, y_pred=video.fake),
                   out_dir / "plots" / f"{name}_confusion_video.png",
                   title=f"{name}: videos ({video.rule})")
    save_confusion(binary_report(labels, probs, frame_threshold),
                   out_dir / "plots" / f"{name}_confusion_frame.png",
                   title=f"{name}: faces (p >= {frame_threshold:g})")


def _cell(report: dict, key: str) -> str:
    value = report.get(key, math.nan)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    text = f"{value:.3f}"
    ci = report.get("ci95", {}).get(key)
    if ci and not any(math.isnan(c) for c in ci):
        text += f" [{ci[0]:.3f}, {ci[1]:.3f}]"
    return text


def markdown_table(results: dict, level: str) -> str:
    sets = list(results["test_sets"])
    lines = ["| metric | " + " | ".join(sets) + " |", "|---|" + "---|" * len(sets)]
    for key, title in METRIC_TITLES.items():
        lines.append(f"| {title} | " + " | ".join(
            _cell(results["test_sets"][s][level], key) for s in sets) + " |")
    counts = " | ".join("TP {tp} FP {fp} TN {tn} FN {fn}".format(**results["test_sets"][s][level])
                        for s in sets)
    lines.append(f"| confusion | {counts} |")
    sizes = " | ".join(f"{results['test_sets'][s][level]['n']} "
                       f"({results['test_sets'][s][level]['n_fake']} fake)" for s in sets)
    lines.append(f"| {'videos' if level == 'video' else 'faces'} | {sizes} |")
    return "\n".join(lines)


def _where(face_set: dict) -> str:
    return f" of `{face_set['root']}`, {face_set['split']}" if face_set.get("root") else ""


def write_reports(out_dir: Path, results: dict) -> None:
    atomic_write_json(out_dir / "report.json", results)
    det, agg = results["detector"], results["aggregation"]
    ci_note = ("Values with bootstrap 95% intervals (videos resampled; at frame level whole "
               "videos are resampled with their faces)." if any(
                   "ci95" in s["video"] for s in results["test_sets"].values()) else "")
    md = [
        f"# Detector evaluation: {det['input']} input, {det['backbone']}"
        f"{' + LSTM' if det['temporal'] else ''}",
        "",
        f"Checkpoint: `{det['checkpoint']}`  ",
        f"Video rule: **{agg['rule']}** {agg['params']} - {agg['description']}.  ",
        (f"Chosen on the validation set only ({results['validation']['videos']} videos"
         f"{_where(results['validation'])}) by "
         f"maximising {agg['objective']} ({agg['validation_value']:.3f}; {agg['ties']} of "
         f"{len(agg['grid'])} candidates reach it, the first in grid order is kept); applied "
         f"unchanged to every test set." if agg["searched"] else "Fixed parameters (no search)."),
        "",
        "## Video level",
        "",
        markdown_table(results, "video"),
        "",
        (f"## Clip level (temporal model: a unit is a clip of consecutive faces of a track, "
         f"fake when P(fake) >= {results['frame_threshold']:g})" if det["temporal"] else
         f"## Frame level (face is fake when P(fake) >= {results['frame_threshold']:g})"),
        "",
        markdown_table(results, "frame"),
        "",
        ci_note,
        "",
        "Per-video predictions: `predictions/<set>_videos.csv`; figures: `plots/`.",
        "",
    ]
    atomic_write_text(out_dir / "report.md", "\n".join(md))
