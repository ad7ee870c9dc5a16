"""From a config's ``data`` section to clips and their train / val / test split.

Labels are read (any supported format), joined to frames (a clips folder or an MRI-DF
manifest), given MRIs when the model needs them and none are stored (an MRI generator run
once over every frame), and split by identity / method / both. Labels without frames stop
the run with the list of keys unless ``data.allow_missing`` is set, in which case they are
skipped and counted in the report.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from datasets_builders.faces import FaceDetectionConfig
from datasets_builders.frames import VideoDecodeError
from detectors.realism.clips import (
    Clip,
    clip_dir,
    clips_from_folders,
    clips_from_manifest,
    extract_video_faces,
    load_face,
)
from detectors.realism.config import RealismDataConfig
from detectors.realism.graded import VIDEO_SUFFIXES
from detectors.realism.labels import MosRecord, read_mos_labels
from detectors.realism.splits import Split, make_split
from mrigan.errors import MriganError
from mrigan.inference import MRIGenerator

_log = logging.getLogger(__name__)


class RealismDataError(MriganError, ValueError):
    """Labels and frames that do not fit together (missing frames, no label file...)."""


@dataclass
class RealismData:
    clips: list[Clip]
    split: Split
    missing: list[str] = field(default_factory=list)

    def subset(self, indices: Sequence[int]) -> list[Clip]:
        return [self.clips[i] for i in indices]

    @property
    def train(self) -> list[Clip]:
        return self.subset(self.split.train)

    @property
    def val(self) -> list[Clip]:
        return self.subset(self.split.val)

    @property
    def tests(self) -> dict[str, list[Clip]]:
        return {name: self.subset(idx) for name, idx in self.split.tests.items()}


def read_records(cfg: RealismDataConfig) -> list[MosRecord]:
    if not cfg.labels:
        raise RealismDataError("data.labels is empty: name at least one MOS label file")
    records: list[MosRecord] = []
    for path in cfg.labels:
        records.extend(read_mos_labels(path, cfg.label_format))
    keys = [r.key for r in records]
    if len(set(keys)) != len(keys):
        dup = sorted({k for k in keys if keys.count(k) > 1})
        raise RealismDataError(f"videos rated in more than one label file: {dup[:5]}")
    return records


def attach_generated_mris(clips: Sequence[Clip], predict: Callable, size: int,
                          batch_size: int = 64) -> list[Clip]:
    """Clips whose MRIs are ``predict((N,3,H,W) faces in [0,1]) -> (N,3,H,W) MRIs``, stored as
    uint8 in memory (one generator pass over all frames instead of one per epoch)."""
    import torch

    out = []
    for clip in clips:
        faces = np.stack([load_face(f, size) for f in clip.faces])
        mris = []
        for i in range(0, len(faces), batch_size):
            x = torch.from_numpy(faces[i:i + batch_size]).permute(0, 3, 1, 2).float() / 255.0
            with torch.no_grad():
                m = predict(x).detach().float().clamp(0, 1).cpu()
            mris.extend(np.rint(m.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8))
        out.append(replace(clip, mris=tuple(mris)))
    return out


def extract_missing_faces(cfg: RealismDataConfig, records: Sequence[MosRecord],
                          log: Callable[[str], None] = _log.info) -> dict[str, int]:
    """Fill ``data.clips`` from ``data.videos`` for every rated video without face crops yet.

    The video of label key ``k`` is ``<videos>/<k>`` (keys without an extension, as DFGC's,
    try the usual video suffixes). Videos that are absent, undecodable or faceless are
    skipped and counted by reason; their labels then count as missing frames.
    """

    counts = {"extracted": 0, "cached": 0, "no_video": 0, "decode_error": 0, "no_face": 0}
    detector = None
    for r in records:
        dest = clip_dir(cfg.clips, r.key)
        if dest.is_dir() and any(dest.iterdir()):
            counts["cached"] += 1
            continue
        base = Path(cfg.videos, r.key)
        video = next((p for p in [base, *(base.with_name(base.name + s) for s in VIDEO_SUFFIXES)]
                      if p.is_file()), None)
        if video is None:
            counts["no_video"] += 1
            continue
        if detector is None:  # the shared detection defaults; realism clips detect at 640 px
            detector = FaceDetectionConfig(max_side=640).detector()
        try:
            extract_video_faces(video, dest, detector=detector, every=cfg.video_every,
                                max_frames=cfg.video_max_frames, size=cfg.face_size,
                                detect_every=2)
            counts["extracted"] += 1
        except VideoDecodeError as exc:
            log(f"skipped {video}: {exc.reason}")
            counts["decode_error"] += 1
        except ValueError as exc:  # no face found
            log(f"skipped {video}: {exc}")
            counts["no_face"] += 1
    log("faces from videos: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return counts


def load_clips(cfg: RealismDataConfig, records: Sequence[MosRecord], need_mri: bool) -> tuple[list[Clip], list[str]]:
    if bool(cfg.clips) == bool(cfg.manifest):
        raise RealismDataError("set exactly one of data.clips (face-crop folders) and data.manifest")
    if cfg.videos:
        if not cfg.clips:
            raise RealismDataError("data.videos needs data.clips: the folder the faces are written to")
        extract_missing_faces(cfg, records)
    if cfg.clips:
        clips, missing = clips_from_folders(records, cfg.clips,
                                            require_mri=need_mri and cfg.mri_source == "precomputed")
    else:
        clips, missing = clips_from_manifest(records, cfg.manifest)
    if missing and not cfg.allow_missing:
        where = cfg.clips or cfg.manifest
        raise RealismDataError(f"{len(missing)} of {len(records)} rated videos have no frames in "
                               f"{where} (first: {missing[:5]}); set data.allow_missing=true to skip them")
    if need_mri:
        if cfg.mri_source == "generator":
            if not cfg.generator:
                raise RealismDataError("data.mri_source=generator needs data.generator (weights file)")

            gen = MRIGenerator.load(cfg.generator)
            clips = attach_generated_mris(clips, gen.predict_tensor, cfg.image_size)
        elif cfg.mri_source != "precomputed":
            raise RealismDataError(f"unknown data.mri_source {cfg.mri_source!r}; known: precomputed, generator")
        lacking = [c.key for c in clips if not c.mris]
        if lacking:
            raise RealismDataError(f"{len(lacking)} clips have no MRIs (first: {lacking[:5]}); "
                                   "precompute them or set data.mri_source=generator")
    return clips, missing


def prepare_data(cfg: RealismDataConfig, need_mri: bool) -> RealismData:
    """Read, join and split as the config says. ``split: none`` makes one test set ``all``."""
    records = read_records(cfg)
    clips, missing = load_clips(cfg, records, need_mri)
    if cfg.split == "none":
        split = Split(train=(), val=(), tests={"all": tuple(range(len(clips)))})
    else:
        split = make_split([c.record for c in clips], cfg.split, cfg.test_fraction,
                           cfg.val_fraction, cfg.seed, cfg.test_identities, cfg.test_methods)
    return RealismData(clips, split, missing)
