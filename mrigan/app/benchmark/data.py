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

from pathlib import Path

from datasets_builders.faces import FaceDetectionConfig
from datasets_builders.mri_df import (
    AugmentConfig,
    BuildConfig,
    SourceConfig,
    SplitConfig,
    build_mri_df,
)
from mrigan.app.benchmark.config import BenchmarkConfig
from mrigan.app.benchmark.stages import BenchmarkError
from mrigan.mri_df_format import read_manifest


def face_settings(cfg: BenchmarkConfig) -> FaceDetectionConfig:
    return FaceDetectionConfig(device=cfg.device, max_side=cfg.data.max_side, size=cfg.data.size)


def mri_df_settings(cfg: BenchmarkConfig) -> dict:
    d = cfg.data
    return {"every": d.every, "max_frames": d.max_frames, "size": d.size,
            "max_side": d.max_side, "augment_fraction": d.augment_fraction,
            "val": cfg.split.val, "seed": cfg.split.seed}


def build_stage(cfg: BenchmarkConfig, csv_path: str, folder: Path, *, val: float,
                log=print) -> dict:
    """The MRI-DF builder on a split CSV; resumes its own unit records when rerun."""
    build = BuildConfig(
        out=str(folder / "data"), sources=(SourceConfig(kind="csv", root=csv_path),),
        every=cfg.data.every, max_frames=cfg.data.max_frames, seed=cfg.split.seed,
        progress=False, faces=face_settings(cfg),
        augment=AugmentConfig(augment_fraction=cfg.data.augment_fraction),
        split=SplitConfig(val=val, test=0.0))
    summary = build_mri_df(build, log=log)
    rows = read_manifest(build.out)
    if not rows:
        raise BenchmarkError("the MRI-DF build wrote no (face, MRI) pair: no face found in the "
                             "listed videos", csv_path)
    by_split: dict[str, dict] = {}
    for r in rows:
        s = by_split.setdefault(r["split"], {"rows": 0, "fake": 0, "videos": set(),
                                             "identities": set()})
        s["rows"] += 1
        s["fake"] += r["label"] == "fake"
        s["videos"].add(r["video"])
        s["identities"].add(r["identity"])
    counts = {k: {"rows": v["rows"], "fake_rows": v["fake"], "videos": len(v["videos"]),
                  "identities": sorted(v["identities"])} for k, v in by_split.items()}
    return {"root": build.out, "splits": counts, "pairs_written": summary.pairs_written}


def face_set_from_mri_df(mri_df_root: str, split: str | None, folder: Path) -> dict:
    """STOP-GAP until ``datasets_builders.build_faces`` is in main: the faces of an MRI-DF
    (its rows read without the ``mri`` column) stand in for a face set of the same videos.
    They are cut at the original's face boxes, not detected on each video as a face set's are."""
    rows = [r for r in read_manifest(mri_df_root) if split is None or r["split"] == split]
    if not rows:
        raise BenchmarkError(f"no faces in split {split!r}", mri_df_root)
    return {"root": mri_df_root, "split": split or "", "rows": len(rows),
            "videos": len({r["video"] for r in rows}),
            "identities": sorted({r["identity"] for r in rows}), "stop_gap": True}


__all__ = ["build_stage", "face_set_from_mri_df", "face_settings", "mri_df_settings"]
