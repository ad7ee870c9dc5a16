"""Stages 2 and 6: the MRI-DF of the training identities, the held-out MRI-DF (GAN quality
only) and the labelled face sets the detectors are judged on.

* ``mri_df``: the MRI-DF builder on ``trainval.csv`` (no test identity is listed there), its
  ``val`` split = the validation identities of the split stage (same planner, same seed).
* ``heldout_mri_df``: the same builder on ``test.csv``; read only by the GAN-quality stage
  (true MRIs of unseen identities), never by a training stage.
* face sets: labelled faces of the validation and test identities' videos, and of the
  ``--labelled`` videos (no originals needed).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from datasets_builders.build_config import FrameSampling
from datasets_builders.build_faces import BuildFaceSetConfig, build_face_set
from datasets_builders.faces import FaceCrop, FaceDetectionConfig
from datasets_builders.mri_df import (
    BuildAugmentConfig,
    BuildConfig,
    BuildSelfBlendConfig,
    BuildSourceConfig,
    BuildSplitConfig,
    build_mri_df,
)
from mrigan import fingerprint as settings_fp
from mrigan.app.benchmark.config import BenchmarkConfig
from mrigan.app.benchmark.stages import BenchmarkError
from mrigan.config import values_of
from mrigan.mri_df_format import read_manifest

_log = logging.getLogger(__name__)


def face_settings(cfg: BenchmarkConfig) -> FaceDetectionConfig:
    return FaceDetectionConfig(device=cfg.device, **values_of(FaceCrop, cfg.data))


def mri_df_settings(cfg: BenchmarkConfig) -> dict:
    """Both MRI-DF builds' settings: ``data`` less the face sets' and the training build's own
    keys, settings added later left out at their older value (:mod:`mrigan.fingerprint`), so
    earlier runs' stages stay valid; and the split's ``val`` and ``seed``."""
    settings = settings_fp.settings(cfg.data, ignore=("max_faces", "self_blend_per_real"))
    return {**settings, "val": cfg.split.val, "seed": cfg.split.seed}


def self_blend_settings(cfg: BenchmarkConfig) -> dict:
    """The training build's self-blend setting, for its stage's settings: left out at 0 (off)
    so earlier runs' stages stay valid; never part of the held-out build."""
    settings = settings_fp.settings(cfg.data)
    return {k: settings[k] for k in ("self_blend_per_real",) if k in settings}


def build_stage(cfg: BenchmarkConfig, csv_path: str, folder: Path, *, val: float,
                self_blend: bool = False, log=_log.info) -> dict:
    """The MRI-DF builder on a split CSV; resumes its own unit records when rerun.
    ``self_blend``: add ``data.self_blend_per_real`` self-blended fakes per real face of the
    build's ``train`` split (the training identities' build only)."""
    build = BuildConfig(
        out=str(folder / "data"), sources=(BuildSourceConfig(kind="csv", root=csv_path),),
        **values_of(FrameSampling, cfg.data), seed=cfg.split.seed,
        detect_every=cfg.data.detect_every, progress=False, faces=face_settings(cfg),
        mri_metric=cfg.data.mri_metric,
        augment=BuildAugmentConfig(augment_fraction=cfg.data.augment_fraction),
        self_blend=BuildSelfBlendConfig(
            per_real=cfg.data.self_blend_per_real if self_blend else 0, splits=("train",)),
        split=BuildSplitConfig(val=val, test=0.0))
    summary = build_mri_df(build, log=log)
    rows = read_manifest(build.out)
    if not rows:
        raise BenchmarkError("the MRI-DF build wrote no (face, MRI) pair: no face found in the "
                             "listed videos", csv_path)
    by_split: dict[str, dict] = {}
    for r in rows:
        s = by_split.setdefault(r["split"], {"rows": 0, "fake": 0, "self_blend": 0,
                                             "videos": set(), "identities": set()})
        s["rows"] += 1
        s["fake"] += r["label"] == "fake"
        s["self_blend"] += r.get("method") == "self_blend"
        s["videos"].add(r["video"])
        s["identities"].add(r["identity"])
    counts = {k: {"rows": v["rows"], "fake_rows": v["fake"], "videos": len(v["videos"]),
                  "identities": sorted(v["identities"])} for k, v in by_split.items()}
    for k, v in by_split.items():
        if v["self_blend"]:  # of fake_rows; only when there are (earlier summaries unchanged)
            counts[k]["self_blend_rows"] = v["self_blend"]
    return {"root": build.out, "splits": counts, "pairs_written": summary.pairs_written}


def face_set_settings(cfg: BenchmarkConfig) -> dict:
    return {**values_of(FrameSampling, cfg.data), **values_of(FaceCrop, cfg.data),
            "max_faces": cfg.data.max_faces, "seed": cfg.split.seed}


def face_set_stage(cfg: BenchmarkConfig, csv_path: str, folder: Path, log=_log.info) -> dict:
    """A labelled face set of every video a CSV lists (``datasets_builders.build_faces``: one
    unit per video, no originals needed, the face-set builder's recall settings). Every row is
    one set (no split inside it); it resumes its own per-video records when rerun."""
    base = BuildFaceSetConfig()
    fcfg = BuildFaceSetConfig(
        out=str(folder / "data"), sources=(BuildSourceConfig(kind="csv", root=str(csv_path)),),
        **values_of(FrameSampling, cfg.data), max_faces=cfg.data.max_faces,
        seed=cfg.split.seed, progress=False, dataset_splits=False,
        faces=dataclasses.replace(base.faces, device=cfg.device, **values_of(FaceCrop, cfg.data)),
        split=BuildSplitConfig(val=0.0, test=0.0))
    summary = build_face_set(fcfg, log=log)
    rows = read_manifest(fcfg.out, require_mri=False)
    if not rows:
        raise BenchmarkError("the face-set build found no face in the listed videos", csv_path)
    return {"root": fcfg.out, "split": "", "rows": len(rows),
            "videos": len({r["video"] for r in rows}),
            "fake_videos": len({r["video"] for r in rows if r["label"] == "fake"}),
            "identities": sorted({r["identity"] for r in rows}),
            "skipped": dict(summary.skipped)}


__all__ = ["build_stage", "face_set_settings", "face_set_stage", "face_settings",
           "mri_df_settings", "self_blend_settings"]
