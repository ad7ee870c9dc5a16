"""``build_face_set(config)``: labelled face sets of videos that need no originals.

The paper judges detectors video by video on labelled videos without originals (the DFDC test
set); a *face set* holds their faces: every video (real or fake, with or without its original)
is one unit; every Nth frame is decoded, faces are found and tracked with the one face-track
iterator (``faces.iter_face_tracks``; the permissive second pass is ON for face sets:
``faces.second_pass_below`` defaults to ``RECALL_SECOND_PASS_BELOW``), at most ``max_faces``
crops per video are kept (evenly spaced over the video's faces in frame order), cropped as the
MRI-DF builder crops them, and written with the one writer (``MriDfWriter(with_mri=False)``).
``manifest.csv`` (``read_manifest(root, require_mri=False)``) has ``image,label,video,identity,
split`` and ``method,source,frame,track,coverage,detection_pass,dataset_split``.

Sources: any reader of ``datasets_builders.sources`` (DFDC folders with ``metadata.json``, FF++
with its official ``train/val/test.json`` lists, Celeb-DF-v2 with ``List_of_testing_videos.txt``,
a CSV ``path,label[,identity,split,...]``, image folders).

Splits: a source's own split (the CSV's ``split`` column, the FF++ lists, Celeb-DF's test list)
is kept when the source names ``val`` or ``test`` for some video (``dataset_splits: true``);
videos without one, and sources whose videos all say ``train`` (DFDC's metadata says ``train``
for every video, as thesis 002 notes), are split by identity with the seeded ``split.val`` /
``split.test`` fractions (``build_plan.assign_splits``, ``mrigan.grouping``).

Resume, shards, the writer lock, the settings fingerprint and the skip-and-count summary are
the MRI-DF builder's (``build_run``, ``build_records``). Skip reasons: ``video unreadable``,
``no frame decoded``, ``no face found``, ``multi_face`` (``faces.drop_multi_face``), and the
readers' (``listed file missing``, ...).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from datasets_builders import build_unit
from datasets_builders.build_config import (
    BuildError,
    VideoBuildConfig,
)
from datasets_builders.build_plan import Plan, Unit, _hash01, assign_splits, unique_items
from datasets_builders.build_records import BuildSummary
from datasets_builders.build_run import check_output, merge_records, run_units
from datasets_builders.build_unit import open_frames
from datasets_builders.faces import (
    RECALL_SECOND_PASS_BELOW,
    BoxCache,
    Detectors,
    FaceDetectionConfig,
    FaceDetector,
    FaceSkipError,
    find_faces,
    iter_face_tracks,
)
from datasets_builders.frames import VideoDecodeError
from datasets_builders.sources import read_source
from mrigan.config import bounds
from mrigan.fingerprint import not_shaping
from mrigan.mri_df_format import MriDfWriter

_log = logging.getLogger(__name__)

SPLIT_WORDS = {"train": "train", "training": "train", "val": "val", "valid": "val",
               "validation": "val", "dev": "val", "test": "test", "testing": "test"}


def _recall_faces() -> FaceDetectionConfig:
    return FaceDetectionConfig(second_pass_below=RECALL_SECOND_PASS_BELOW)


@dataclass(frozen=True)
class BuildFaceSetConfig(VideoBuildConfig):
    """A face set's settings (YAML, or ``mrigan build-faces`` flags): the MRI-DF builder's
    shared ones (:class:`~datasets_builders.build_config.VideoBuildConfig`) with their own
    defaults for ``out`` and ``faces`` (recall: the second pass on), and the crops per video.
    Ranges are ``bounds`` metadata, checked when loaded and when built directly."""

    out: str = field(default="runs/faces", metadata=not_shaping())
    faces: FaceDetectionConfig = field(default_factory=_recall_faces)
    #: crops kept per video (K), evenly spaced over its faces
    max_faces: int = field(default=32, metadata=bounds(minimum=1))
    dataset_splits: bool = True  # keep a source's own train/val/test split (see the module doc)


def _dataset_split(value: str | None, where) -> str | None:
    if not value:
        return None
    split = SPLIT_WORDS.get(str(value).strip().lower())
    if split is None:
        raise BuildError(f"split {value!r} is not one of train/val/test", where)
    return split


def plan_face_units(cfg: BuildFaceSetConfig) -> Plan:
    """One unit per listed video or image (fakes need no original); ids unique, splits set."""
    if not cfg.sources:
        raise BuildError("no sources configured (add `sources:` to the config or use --csv)")
    names = [s.label for s in cfg.sources]
    if len(set(names)) != len(names):
        raise BuildError(f"source names must be unique, got {names}; set `name:` per source")
    skipped: list[dict] = []
    inputs: list[Path] = []
    given: list[Unit] = []  # split from the dataset
    grouped: list[Unit] = []  # split by identity
    for scfg in cfg.sources:
        listing = read_source(scfg.kind, scfg.root, name=scfg.label, **scfg.options)
        skipped += [{"path": s.path, "reason": s.reason} for s in listing.skipped]
        items = unique_items(listing.items, skipped)
        inputs += [i.path for i in items]
        splits = {i.path: _dataset_split(i.dataset_split, i.path) for i in items}
        use_given = cfg.dataset_splits and any(s in ("val", "test") for s in splits.values())
        for item in sorted(items, key=lambda i: i.video_id):
            unit = Unit(key=f"{scfg.label}/{item.video_id}", source=scfg, original=item, fakes=())
            if scfg.fraction < 1.0 and _hash01(cfg.seed, "fraction", unit.key) >= scfg.fraction:
                continue
            if use_given and splits[item.path]:
                given.append(dataclasses.replace(unit, split=splits[item.path]))
            else:
                grouped.append(unit)
    units = sorted(given + assign_splits(sorted(grouped, key=lambda u: u.key), cfg),
                   key=lambda u: u.key)
    return Plan(units, skipped, inputs)


def select_faces(faces_per_frame: list[tuple[int, int]], k: int) -> set[tuple[int, int]]:
    """At most ``k`` of the (frame index, face position) pairs, evenly spaced in frame order."""
    if len(faces_per_frame) <= k:
        return set(faces_per_frame)
    picks = np.unique(np.linspace(0, len(faces_per_frame) - 1, k).round().astype(int))
    return {faces_per_frame[i] for i in picks}


class FaceUnitBuilder:
    """One video of a face set -> face PNGs and manifest rows (a done record, not yet saved)."""

    def __init__(self, cfg: BuildFaceSetConfig, out: Path, detectors: Detectors) -> None:
        self.cfg, self.out, self.detectors = cfg, out, detectors
        self.cache = BoxCache(out / "boxes")
        self.writer = MriDfWriter(out, with_mri=False)

    def __call__(self, unit: Unit) -> dict:
        """The unit's record, returned once its PNGs are on disk: they are saved by a background
        thread while faces are found (``build_unit.PENDING_WRITES`` queued at most, 0 saves
        them in this thread; the same bytes either way), as in the MRI-DF build."""
        with self.writer.saving_in_background(build_unit.PENDING_WRITES):
            return self._build(unit)

    def _build(self, unit: Unit) -> dict:
        cfg, item = self.cfg, unit.original
        video = f"{unit.source.label}/{item.video_id}"
        record = {"unit": unit.key, "status": "done", "rows": [], "videos_read": 0, "skipped": [],
                  "notes": {}, "coverage": {}, "second_pass": False}

        def skip(reason: str, detail: str) -> dict:
            record.update(status="skipped", rows=[])
            record["skipped"].append({"path": str(item.path), "reason": reason, "detail": detail})
            return record

        detect = unit.source.detect_faces
        frames = lambda: open_frames(item, cfg)  # noqa: E731
        cache_key = None
        if detect:
            cache_key = BoxCache.key(item.path, 1 if item.is_image else cfg.every, cfg.max_frames,
                                     self.detectors.cache_settings())
        try:
            if detect:
                found = find_faces(frames, self.detectors, cfg.faces, cache=self.cache,
                                   cache_id=unit.file_key, cache_key=cache_key)
                listed = [(i, j) for i, b in zip(found.indices, found.boxes, strict=True)
                          for j in range(len(b))]
                n_frames, coverage = len(found.indices), found.coverage
            else:
                n_frames = sum(1 for _ in frames())
                listed, coverage = [(i, 0) for i, _ in frames()], 1.0
            if not n_frames:
                return skip("no frame decoded", "")
            record["coverage"] = {video: round(coverage, 4)}
            if not listed:
                return skip("no face found", f"{n_frames} frames searched")
            keep = select_faces(listed, cfg.max_faces)
            rows = []
            for tf in iter_face_tracks(frames, self.detectors, cfg.faces, cache=self.cache,
                                       cache_id=unit.file_key, cache_key=cache_key,
                                       margin=cfg.faces.margin if detect else 1.0,
                                       whole_frame=not detect):
                record["second_pass"] = tf.second_pass
                for pos, face in enumerate(tf.faces):
                    if (tf.index, pos) not in keep:
                        continue
                    rows.append(self.writer.write(
                        face=face.crop, label=item.label, video=video, frame=tf.index,
                        track=face.track, split=unit.split, identity=item.identity,
                        method=item.method, source=unit.source.label,
                        coverage=round(tf.coverage, 4), detection_pass=face.detection_pass,
                        dataset_split=item.dataset_split or ""))
        except VideoDecodeError as exc:
            return skip("video unreadable", exc.reason)
        except FaceSkipError as exc:  # multi-face, too small
            return skip(exc.reason, exc.problem)
        record.update(rows=rows, videos_read=1)
        return record


def build_face_set(cfg: BuildFaceSetConfig, *, log=_log.info, detector: FaceDetector | None = None,
                   restart: bool = False) -> BuildSummary:
    """Build (or resume, or build one shard of) a face set under ``cfg.out``; see the module doc.

    ``detector``: an already loaded first-pass ``FaceDetector`` to reuse; ``restart``: remove an
    earlier build's outputs first (needed when the settings changed).
    """
    check_output(cfg)
    plan = plan_face_units(cfg)

    def start(out: Path):
        return FaceUnitBuilder(cfg, out, Detectors(cfg.faces, first=detector))

    return run_units(cfg, plan, start, restart=restart, summary=_summary(), desc="face-set videos",
                     log=log)


def merge_face_shards(cfg: BuildFaceSetConfig, *, log=_log.info) -> BuildSummary:
    """Join the shards' records into ``manifest.csv`` (fails listing what is still missing)."""
    return merge_records(cfg, plan_face_units(cfg), _summary(), log=log)


def _summary() -> BuildSummary:
    return BuildSummary(unit_word="videos/images", row_word="faces")


__all__ = ["BuildFaceSetConfig", "FaceUnitBuilder", "build_face_set", "merge_face_shards",
           "plan_face_units", "select_faces"]
