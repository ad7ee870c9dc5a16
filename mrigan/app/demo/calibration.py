"""Step 3 of the demo: the generator's figures on held-out MRI-DF pairs, and the verdict's
face threshold chosen on the validation split only."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from detectors.aggregate import VideoScores, grid_search
from mrigan import perceptual
from mrigan.app.demo.config import DemoConfig
from mrigan.model_card import DEFAULT_FAKE_FRACTION
from mrigan.mri_df_format import MriDfDataset, manifest_path, read_manifest, require_metric

_log = logging.getLogger(__name__)


def generator_figures(gen, root: Path, split: str) -> dict[str, float]:
    """Mean SSIM of generated vs true MRIs (data range 1) and mean generated MRI of fakes and
    reals, over every pair of ``split``."""
    import torch

    ds = MriDfDataset(root, split, gen.image_size)
    require_metric(ds.rows, gen.mri_metric, manifest_path(root), what="the demo's generator")
    items = [ds[i] for i in range(len(ds))]
    faces = torch.stack([it["image"] for it in items])
    true = torch.stack([it["mri"] for it in items])
    labels = torch.tensor([it["label"] for it in items])
    pred = gen.predict_tensor(faces).cpu()
    ssim = perceptual.mean_ssim(pred, true, data_range=1.0)
    per_face = pred.flatten(1).mean(1)
    return {"split": split, "pairs": len(items), "mean_ssim": float(ssim.mean()),
            "mri_mean_fake": float(per_face[labels == 1].mean()),
            "mri_mean_real": float(per_face[labels == 0].mean()),
            "scores": per_face.tolist(), "labels": labels.tolist()}


def calibrate_mri_threshold(scores: list[float], labels: list[int], fraction: float,
                            rule: str) -> tuple[float, float]:
    """The face threshold on mean MRI that best separates validation fakes from reals
    (balanced accuracy, ``detectors.aggregate.grid_search``, one face per unit)."""
    units = [VideoScores(f"val{i}", int(y), np.asarray([s])) for i, (s, y) in
             enumerate(zip(scores, labels, strict=True))]
    grid = np.round(np.linspace(0.002, 0.3, 150), 4)
    found = grid_search(rule, units, thresholds=tuple(grid), fractions=(fraction,))
    return float(found.params["threshold"]), float(found.value)


def held_out_figures(cfg: DemoConfig, gen, data_root: Path, log=_log.info):
    """Step 3: figures on the test split (else val); the verdict's face threshold on val only."""
    splits = {r["split"] for r in read_manifest(data_root)}
    test = generator_figures(gen, data_root, "test" if "test" in splits else "val")
    analyze_cfg, calibration = cfg.analyze, None
    if cfg.calibrate_threshold and "val" in splits:
        val = generator_figures(gen, data_root, "val")
        if len(set(val["labels"])) == 2:
            verdict = analyze_cfg.verdict
            fraction = (DEFAULT_FAKE_FRACTION if verdict.fake_fraction is None
                        else verdict.fake_fraction)
            thr, bacc = calibrate_mri_threshold(val["scores"], val["labels"], fraction,
                                                verdict.rule)
            analyze_cfg = dataclasses.replace(analyze_cfg, verdict=dataclasses.replace(
                verdict, mri_threshold=thr, fake_fraction=fraction))
            calibration = {"mri_threshold": thr, "val_balanced_accuracy": bacc,
                           "val_pairs": val["pairs"]}
            log(f"  verdict face threshold (mean MRI) {thr:.4f}, chosen on {val['pairs']} "
                 f"validation faces (balanced accuracy {bacc:.3f})")
    return test, analyze_cfg, calibration
