"""The demo from start to end (``run_demo``): data, training, held-out figures, analysed
videos, ``summary.json``."""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from mrigan.app.analysis import AnalyzeFramesConfig, Analyzer
from mrigan.app.demo.calibration import held_out_figures
from mrigan.app.demo.config import DemoConfig
from mrigan.app.demo.data import build_data, held_out_videos
from mrigan.app.demo.training import train_and_export
from mrigan.app.demo.videos import synthetic_videos
from mrigan.config import save_config
from mrigan.fileio import atomic_write_json
from mrigan.inference import MRIGenerator


def log(*args: Any, **kwargs: Any) -> None:
    print(*args, **kwargs, flush=True)


def run_demo(cfg: DemoConfig, run_dir: Path) -> int:
    """Every step of the demo under ``run_dir``; 0 when the held-out videos were analysed."""
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    t0 = time.monotonic()
    fc = cfg.analyze.faces
    device = cfg.analyze.device if fc.device == "auto" else fc.device
    detector = dataclasses.replace(fc, device=device).detector()  # first pass; shared with analysis
    data_root, photos, build_cfg = build_data(cfg, run_dir / "data", detector, log)
    weights, trained = train_and_export(cfg, run_dir, data_root, log)
    gen = MRIGenerator.load(weights, device=cfg.analyze.device)
    log(f"[3/4] held-out figures of {weights} (step {trained.best_step})")
    test, analyze_cfg, calibration = held_out_figures(cfg, gen, data_root, log)

    log("[4/4] analysing held-out videos")
    if photos is not None:
        truth = synthetic_videos(cfg, run_dir / "videos", photos)
        videos = [run_dir / "videos" / name for name in truth]
        held_from = "unseen synthetic scenes"
    else:
        videos, is_fake, split = held_out_videos(cfg, build_cfg)
        truth = {str(v): is_fake[str(v)] for v in videos}
        held_from = f"the {split} split"
        analyze_cfg = dataclasses.replace(analyze_cfg, frames=AnalyzeFramesConfig(
            every=cfg.video.every, max_frames=cfg.video.max_frames))
    report_dir = run_dir / "report"
    analyzer = Analyzer(weights, None, analyze_cfg, face_detector=detector)  # path: provenance
    results = analyzer.run(videos, report_dir, progress=sys.stderr.isatty())
    video_means = _video_truth_means(results, truth, synthetic=photos is not None)

    summary = {
        "data": cfg.data.root or "synthetic",
        "generator": str(weights), "best_step": trained.best_step, "steps": trained.step,
        "held_out_split": test["split"], "held_out_pairs": test["pairs"],
        "held_out_mean_ssim": test["mean_ssim"],
        "held_out_mri_mean_fake": test["mri_mean_fake"],
        "held_out_mri_mean_real": test["mri_mean_real"],
        "calibration": calibration,
        "videos_from": held_from,
        "video_faces_mri_mean_fake": video_means["fake"],
        "video_faces_mri_mean_real": video_means["real"],
        "verdicts": {Path(r.path).name: (r.verdict.label if r.verdict else r.status)
                     for r in results.inputs},
        "truth": {Path(k).name: (any(v) if isinstance(v, list) else bool(v))
                  for k, v in truth.items()},
        "report": str(report_dir / "report.html"),
        "seconds": round(time.monotonic() - t0, 1),
    }
    atomic_write_json(run_dir / "summary.json", summary)
    _print_summary(summary)
    return 0 if results.analysed else 1


def _print_summary(summary: dict[str, Any]) -> None:
    for name, label in summary["verdicts"].items():
        really = "fake" if summary["truth"].get(name) else "real"
        log(f"  {name}: {label.upper()} (truth: {really})")
    log(f"report: {summary['report']}")
    fake, real = summary["video_faces_mri_mean_fake"], summary["video_faces_mri_mean_real"]
    log(f"held-out MRI SSIM {summary['held_out_mean_ssim']:.3f} on {summary['held_out_pairs']} "
         f"{summary['held_out_split']} faces; mean MRI fake {summary['held_out_mri_mean_fake']:.3f}"
         f" vs real {summary['held_out_mri_mean_real']:.3f}"
         + (f"; video faces fake {fake:.3f} vs real {real:.3f}"
            if fake is not None and real is not None else "")
         + f"; {summary['seconds']:.0f} s")


def _video_truth_means(results, truth: dict, synthetic: bool) -> dict[str, float | None]:
    """Mean face MRI over the analysed videos' faces, grouped by ground truth."""
    sums: dict[str, list[float]] = {"fake": [], "real": []}
    for r in results.analysed:
        key = Path(r.path).name if synthetic else r.path
        t = truth.get(key)
        for f in r.face_results():
            fake = t[f.frame] if isinstance(t, list) else bool(t)
            sums["fake" if fake else "real"].append(f.mri["mean"])
    return {k: (float(np.mean(v)) if v else None) for k, v in sums.items()}
