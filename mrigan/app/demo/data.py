"""Step 1 of the demo: MRI-DF from synthetic scenes of the packaged photos, or from a real
dataset (``data.root``) with ``datasets_builders.build_mri_df``; and which held-out videos of a
real dataset the demo analyses.

``scene_face_pairs`` is the face loop here (``datasets_builders.faces.find_faces`` on the real
scenes - single images, so no tracks - and the same square crop from the real and the fake);
``build_synthetic_mri_df`` writes what it yields with the one MRI-DF writer
(``mrigan.mri_df_format.MriDfWriter``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from datasets_builders.augment import PlanRunner, make_plan, plan_label
from datasets_builders.faces import crop_face, find_faces
from datasets_builders.mri_df import (
    BuildAugmentConfig,
    BuildConfig,
    BuildSourceConfig,
    BuildSplitConfig,
    FaceDetectionConfig,
    build_mri_df,
    plan_units,
)
from mrigan import perceptual
from mrigan.app.demo.config import DemoConfig
from mrigan.app.demo.scenes import Photo, blend_into, packaged_photos, render_scene, scene_params
from mrigan.mri_df_format import MriDfWriter, write_manifest

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScenePair:
    """One synthetic scene: its id, split and augmentation, and the face crops of its real and
    fake frame (``None`` when MTCNN found no face in the real frame)."""
    sid: str
    identity: str
    split: str
    plan: Any
    real_crop: np.ndarray | None
    fake_crop: np.ndarray | None


def scene_face_pairs(cfg: DemoConfig, detector, photos: list[Photo],
                     log=_log.info) -> Iterator[ScenePair]:
    """The face loop of the synthetic data: render each scene and its fake, apply one seeded
    augmentation plan to both, find the faces of the real scenes (16 at a time, ``find_faces``
    with the analysis' detection settings but no second pass: training data, where a permissive
    detector's false faces do more harm than a skipped scene) and crop the same square from both
    frames."""
    faces_cfg = replace(cfg.analyze.faces, second_pass_below=0.0)
    sc, dc = cfg.data.synthetic, cfg.data
    rng = np.random.default_rng([dc.seed, 1])
    jobs = []
    for photo in photos:
        for k in range(sc.scenes_per_photo):
            u = rng.random()
            split = "test" if u < sc.test_fraction else "val" if u < sc.test_fraction + sc.val_fraction else "train"
            jobs.append((photo, k, split, scene_params(rng, sc), int(rng.integers(2**31))))
    batch_size = 16
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start:start + batch_size]
        reals, fakes, plans = [], [], []
        for photo, k, _split, params, seed in chunk:
            real, square = render_scene(photo, params, sc.scene_size)
            fake = blend_into(real, square, seed, sc.quality)
            plan = make_plan(dc.seed, f"{photo.name}_{k:03d}", augment_fraction=sc.augment_fraction,
                             distraction_fraction=sc.distraction_fraction)
            run = PlanRunner(plan)  # the same augmentation on the real and on the fake scene
            reals.append(run(real, 0))
            fakes.append(run(fake, 0))
            plans.append(plan)
        found = find_faces(lambda reals=reals: enumerate(reals), detector, faces_cfg)
        for (photo, k, split, _params, _seed), real, fake, plan, boxes in zip(
                chunk, reals, fakes, plans, found.boxes, strict=True):
            crops = ((crop_face(real, boxes[0], cfg.analyze.faces.margin, dc.crop_size),
                      crop_face(fake, boxes[0], cfg.analyze.faces.margin, dc.crop_size))
                     if boxes else (None, None))
            yield ScenePair(f"{photo.name}_{k:03d}", photo.name, split, plan, *crops)
        log(f"  scenes {min(start + batch_size, len(jobs))}/{len(jobs)}", end="\r")
    log("")


def build_synthetic_mri_df(cfg: DemoConfig, root: Path, detector, photos: list[Photo],
                           log=_log.info) -> dict[str, int]:
    """MRI-DF (manifest.csv + PNGs) from scenes of the packaged photos; returns counts.
    MRIs of ``gan.data.mri_metric`` (``ssim``: ``clip(1 - SSIM(real crop, fake crop), 0, 1)``);
    reals get the writer's black MRI."""
    metric = cfg.gan.data.mri_metric
    w = MriDfWriter(root, mri_metric=metric)
    rows: list[dict[str, Any]] = []
    counts = {"scenes": 0, "no_face": 0}
    for pair in scene_face_pairs(cfg, detector, photos, log):
        counts["scenes"] += 1
        if pair.real_crop is None:
            counts["no_face"] += 1
            continue
        sid = pair.sid
        mri = perceptual.metric_map_np(pair.real_crop, pair.fake_crop, metric=metric)
        common = {"split": pair.split, "identity": pair.identity, "source": "demo",
                  "augmentation": plan_label(pair.plan)}
        rows.append(w.write(face=pair.real_crop, label="real", video=f"{sid}_real",
                            method="original", **common))
        rows.append(w.write(face=pair.fake_crop, mri=mri, label="fake", video=f"{sid}_fake",
                            method="self_blend", **common))
    write_manifest(root, rows)
    for split in ("train", "val", "test"):
        counts[f"pairs_{split}"] = sum(r["split"] == split for r in rows)
    return counts


def real_build_config(cfg: DemoConfig, root: Path) -> BuildConfig:
    """The MRI-DF builder's config for ``data.root`` (faces as the analysis finds them)."""
    dc, sc = cfg.data, cfg.data.synthetic
    fc = cfg.analyze.faces
    return BuildConfig(
        out=str(root), every=dc.every, max_frames=dc.max_frames, seed=dc.seed,
        sources=(BuildSourceConfig(kind=dc.kind, root=dc.root, fraction=dc.fraction,
                              options=dict(dc.options)),),
        faces=FaceDetectionConfig(device=cfg.analyze.device, thresholds=fc.thresholds,
                         min_face_size=fc.min_face_size, margin=fc.margin, size=dc.crop_size),
        augment=BuildAugmentConfig(augment_fraction=sc.augment_fraction,
                              distraction_fraction=sc.distraction_fraction),
        split=BuildSplitConfig(val=dc.val, test=dc.test), mri_metric=cfg.gan.data.mri_metric)


def held_out_videos(cfg: DemoConfig, build_cfg) -> tuple[list[Path], dict[str, bool], str]:
    """Up to ``video.max_videos`` videos of the test split (else val), reals and fakes mixed."""
    units = plan_units(build_cfg).units
    for split in ("test", "val", "train"):
        chosen = [u for u in units if u.split == split]
        if chosen:
            break
    reals = [u.original.path for u in chosen]
    fakes = [f.path for u in chosen for f in u.fakes]
    picked: list[Path] = []
    while (reals or fakes) and len(picked) < cfg.video.max_videos:
        for pool in (fakes, reals):
            if pool and len(picked) < cfg.video.max_videos:
                picked.append(pool.pop(0))
    fake_paths = {f.path for u in chosen for f in u.fakes}
    return picked, {str(p): p in fake_paths for p in picked}, split


def build_data(cfg: DemoConfig, data_root: Path, detector, log=_log.info):
    """Step 1: MRI-DF from the packaged photos, or from ``data.root`` with the real builder.
    Returns (root, photos or None, the builder config or None)."""
    synthetic = not cfg.data.root
    log(f"[1/4] MRI-DF from {'packaged photos (synthetic scenes)' if synthetic else cfg.data.root}"
         f" -> {data_root}")
    if not synthetic:
        build_cfg = real_build_config(cfg, data_root)
        build_mri_df(build_cfg, log=log)
        return data_root, None, build_cfg
    photos = packaged_photos(detector)
    counts = build_synthetic_mri_df(cfg, data_root, detector, photos, log)
    log(f"  {counts['scenes']} scenes ({counts['no_face']} without a detected face): pairs "
         f"train {counts['pairs_train']}, val {counts['pairs_val']}, test {counts['pairs_test']}")
    return data_root, photos, None
