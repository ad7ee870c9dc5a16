"""Stages 7-8: video-level evaluation of each detector, and the GAN's quality on unseen people.

Evaluation is ``detectors.evaluate.evaluate_detector``: the video rule's parameters are
grid-searched on the validation identities' face set only, then applied unchanged to each
test face set (held-out identities; the ``--labelled`` videos). The MRI detector's test MRIs
come from the exported generator (content-hash cache inside the stage folder).

GAN quality: on the held-out MRI-DF (test identities, true MRIs from their originals), the
mean SSIM (data range 1) of the generator's MRI vs the true MRI, for fake and real faces
apart, beside the all-black generator's SSIM (black is right for every real face, so it
scores ~1 on reals; a useful generator must beat it on fakes).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch

from detectors.config import (
    AggregationConfig,
    DetectorInputConfig,
    EvalFaceSetConfig,
    EvaluateConfig,
)
from detectors.evaluate import evaluate_detector
from mrigan.app.benchmark.config import BenchmarkConfig
from mrigan.inference import MRIGenerator
from mrigan.mri_df_format import MriDfDataset, manifest_path, require_metric
from mrigan.perceptual import mean_ssim

_log = logging.getLogger(__name__)

VIDEO_KEYS = ("accuracy", "auc", "precision", "recall", "f1", "eer", "ap", "balanced_accuracy",
              "n", "n_fake", "n_real")


def video_columns(video: dict) -> dict:
    """A test set's video-level report (:func:`detectors.metrics.report_with_ci`) as the
    benchmark keeps it: the :data:`VIDEO_KEYS` figures and the intervals of the first seven
    (recall's is the TPR's; ``None`` where there are none)."""
    ci = dict(video.get("ci95", {}))
    ci.setdefault("recall", ci.get("tpr"))  # recall is the TPR
    return {"video": {k: video[k] for k in VIDEO_KEYS},
            "ci95": {k: ci.get(k) for k in VIDEO_KEYS[:7]}}


def eval_stage(cfg: BenchmarkConfig, checkpoint: str, validation: dict, tests: dict[str, dict],
               folder: Path, generator: str = "", log=_log.info) -> dict:
    """``validation`` / ``tests``: face-set stage results (``root``, ``split``)."""
    ev = cfg.evaluate
    ecfg = EvaluateConfig(
        name="benchmark", checkpoint=checkpoint, out_dir=str(folder / "report"),
        validation=EvalFaceSetConfig(name="validation", root=validation["root"],
                                 split=validation.get("split", "")),
        test_sets=tuple(EvalFaceSetConfig(name=n, root=t["root"], split=t.get("split", ""))
                        for n, t in tests.items()),
        aggregation=AggregationConfig(rule=ev.rule), bootstrap=ev.bootstrap,
        batch_size=ev.batch_size, device=cfg.device,
        input=DetectorInputConfig(name="mri", generator=generator) if generator else None)
    res = evaluate_detector(ecfg, log=log)
    out = {"aggregation": {k: res["aggregation"][k] for k in
                           ("rule", "params", "objective", "validation_value", "description")},
           "validation_videos": res["validation"]["videos"], "compute": res["compute"],
           "test_sets": {}}
    for name, t in res["test_sets"].items():
        out["test_sets"][name] = {
            "videos": t["videos"], "faces": t["units"], **video_columns(t["video"]),
            "frame_auc": t["frame"]["auc"],
            "predictions": str(folder / "report" / "predictions" / f"{name}_videos.csv")}
    return out


@torch.no_grad()
def gan_quality_stage(cfg: BenchmarkConfig, generator: str, heldout_root: str,
                      folder: Path) -> dict:
    gen = MRIGenerator.load(generator, device=cfg.device, batch_size=cfg.evaluate.batch_size)
    data = MriDfDataset(heldout_root, None, gen.image_size)
    require_metric(data.rows, gen.mri_metric, manifest_path(heldout_root),
                   what=f"the generator ({generator})")
    sums = {lab: {"generator": 0.0, "black": 0.0, "n": 0} for lab in ("fake", "real")}
    step = cfg.evaluate.batch_size
    for start in range(0, len(data), step):
        items = [data[i] for i in range(start, min(start + step, len(data)))]
        faces = torch.stack([it["image"] for it in items])
        true = torch.stack([it["mri"] for it in items])
        labels = torch.tensor([int(it["label"]) for it in items])
        pred = gen.predict_tensor(faces).float().cpu()
        s_gen = mean_ssim(pred, true, data_range=1.0)
        s_black = mean_ssim(torch.zeros_like(true), true, data_range=1.0)
        for lab, name in ((1, "fake"), (0, "real")):
            m = labels == lab
            sums[name]["generator"] += float(s_gen[m].sum())
            sums[name]["black"] += float(s_black[m].sum())
            sums[name]["n"] += int(m.sum())
    out: dict = {"generator": generator, "heldout_root": heldout_root,
                 "image_size": gen.image_size}
    for name, s in sums.items():
        n = s["n"]
        out[name] = {"n": n, "mean_ssim": s["generator"] / n if n else math.nan,
                     "mean_ssim_black": s["black"] / n if n else math.nan}
    out["identities"] = sorted({r["identity"] for r in data.rows})
    out["videos"] = len({r["video"] for r in data.rows})
    return out


__all__ = ["VIDEO_KEYS", "eval_stage", "gan_quality_stage", "video_columns"]
