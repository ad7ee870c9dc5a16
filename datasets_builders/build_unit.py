"""One unit of the MRI-DF build: an original video and its fakes -> face pairs on disk.

The original is decoded (with the unit's augmentation plan) and its faces found with the one
face-track iterator (``faces.iter_face_tracks``: boxes from the box cache or MTCNN, the second
permissive pass for low-coverage videos, tracks, crops). Then the original and its fakes are
decoded in lockstep and every fake is cut with the ORIGINAL's boxes, so the pair is aligned
pixel for pixel, and written through the one MRI-DF writer (``mrigan.mri_df_format``):

* the real crop with the black MRI,
* each fake crop with ``MRI = clip(1 - SSIM(real crop, fake crop), 0, 1)``.

Every row carries the video's face ``coverage`` and the ``detection_pass`` that found its face.

Speed (issue 14, measured with ``bench/build_mri_df.py``): the detection pass's decoded frames
of the original are kept (``FrameMemo``, up to ``MEMO_BYTES``) so the lockstep pass decodes
only the fakes; both passes decode in a background thread (``prefetch.background``), ahead of
MTCNN / SSIM / PNG writing; ``BuildConfig.detect_every`` runs whole-frame MTCNN on every k-th
sampled frame and ``detect_between: follow`` follows the faces in small crops in between
(``face_follow``); ``BuildConfig.workers`` builds units in several processes (``build_workers``);
the PNGs are encoded and saved by a background thread (``MriDfWriter.saving_in_background``,
``PENDING_WRITES`` images queued at most) while MTCNN runs, and a unit's record is returned only
once all its PNGs are on disk (also when the unit is skipped; on an error nothing is returned).
"""

from __future__ import annotations

import time
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from datasets_builders.augment import PlanRunner, make_plan, plan_label, save_plan
from datasets_builders.build_config import BuildConfig
from datasets_builders.build_plan import Unit
from datasets_builders.face_follow import follow_settings
from datasets_builders.faces import BoxCache, Detectors, FaceSkipError, crop_face, iter_face_tracks
from datasets_builders.frames import VideoDecodeError, iter_frames
from datasets_builders.prefetch import FrameMemo, background
from datasets_builders.sources import VideoItem
from datasets_builders.synthetic import sbi_params, self_blend
from mrigan import perceptual
from mrigan.fileio import read_image
from mrigan.mri_df_format import MriDfWriter

#: decoded frames of one original kept between the detection and the lockstep pass (1 GiB:
#: 380 sampled 720p frames; a longer video is decoded twice instead)
MEMO_BYTES = 1 << 30
#: frames decoded ahead of the consumer by the background thread
PREFETCH = 4
#: face / MRI images queued for the background PNG saver (256 px: 192 KiB each); 0 saves them
#: in this thread (the same bytes; bench/build_mri_df.py compares both)
PENDING_WRITES = 16


class StageTimer:
    """Seconds spent per stage (detect: the detection pass, decoding included; decode, augment,
    crop, ssim, write: the lockstep pass)."""

    def __init__(self) -> None:
        self.seconds: Counter = Counter()
        self.frames = 0

    def add(self, stage: str, t0: float) -> float:
        now = time.perf_counter()
        self.seconds[stage] += now - t0
        return now


@dataclass
class Context:
    cfg: BuildConfig
    out: Path
    timer: StageTimer
    cache: BoxCache
    detectors: Detectors
    writer: MriDfWriter = field(init=False)

    def __post_init__(self) -> None:
        self.writer = MriDfWriter(self.out, mri_metric=self.cfg.mri_metric)


def open_frames(item: VideoItem, cfg: BuildConfig) -> Iterator[tuple[int, np.ndarray]]:
    if item.is_image:
        try:
            image = read_image(item.path)
        except (OSError, ValueError) as exc:
            raise VideoDecodeError(item.path, f"unreadable image: {exc}") from exc
        return iter([(0, image)])
    return iter_frames(item.path, every=cfg.every, max_frames=cfg.max_frames)


def _timed_next(it: Iterator, timer: StageTimer):
    t0 = time.perf_counter()
    try:
        return next(it)
    finally:
        timer.add("decode", t0)


class _Fake:
    """A fake being read in lockstep with its original."""

    def __init__(self, item: VideoItem) -> None:
        self.item = item
        self.frames: Iterator | None = None
        self.rows: list[dict] = []
        self.problem: tuple[str, str] | None = None  # (reason, detail)
        self.ended_at: int | None = None

    @property
    def live(self) -> bool:
        return self.problem is None and self.ended_at is None


def _lockstep(unit: Unit, ctx: Context, runner: PlanRunner, fakes: list[_Fake],
              memo: FrameMemo | None = None):
    """``(index, augmented original frame, {fake number: augmented fake frame})``; the
    original's frames come from ``memo`` when it holds the whole video."""
    cfg, timer = ctx.cfg, ctx.timer
    orig = (memo.replay() if memo is not None else None) or open_frames(unit.original, cfg)
    for fk in fakes:
        try:
            fk.frames = open_frames(fk.item, cfg)
        except VideoDecodeError as exc:
            fk.problem = ("fake unreadable", exc.reason)
    while True:
        try:
            index, frame = _timed_next(orig, timer)
        except StopIteration:
            return
        t0 = time.perf_counter()
        frame = runner(frame, index)
        timer.add("augment", t0)
        fake_frames: dict[int, np.ndarray] = {}
        for k, fk in enumerate(fakes):
            if not fk.live:
                continue
            try:
                f_index, f_frame = _timed_next(fk.frames, timer)
            except StopIteration:
                fk.ended_at = index
                continue
            except VideoDecodeError as exc:
                fk.problem = ("fake unreadable", exc.reason)
                continue
            if f_frame.shape != frame.shape or f_index != index:
                fk.problem = ("fake frame size differs from original",
                              f"{f_frame.shape} vs {frame.shape} at frame {index}")
                continue
            t0 = time.perf_counter()
            fake_frames[k] = runner(f_frame, index)
            timer.add("augment", t0)
        timer.frames += 1 + len(fake_frames)
        yield index, frame, fake_frames


def process_unit(unit: Unit, ctx: Context) -> dict:
    """Decode, augment, detect, crop, MRI, write one unit; return its record (not yet saved)
    once every PNG of the unit is on disk (the background saver is drained and stopped first;
    its errors are raised here)."""
    with ctx.writer.saving_in_background(PENDING_WRITES):
        record = _build_unit(unit, ctx)
        t0 = time.perf_counter()
    ctx.timer.add("write", t0)  # waiting for the unit's last PNGs
    return record


def _build_unit(unit: Unit, ctx: Context) -> dict:
    cfg, timer = ctx.cfg, ctx.timer
    aug = cfg.augment
    on = unit.source.augment  # the per-source switch (the paper left real-face sets alone)
    plan = make_plan(cfg.seed, unit.key, augment_fraction=aug.augment_fraction if on else 0.0,
                     distraction_fraction=aug.distraction_fraction if on else 0.0,
                     augmentations=aug.augmentations or None, distraction_style=aug.distraction)
    runner = PlanRunner(plan)
    if not runner.is_identity:
        save_plan(ctx.out / "plans" / f"{unit.file_key}.json", plan)
    record = {"unit": unit.key, "status": "done", "rows": [], "videos_read": 0, "skipped": [],
              "notes": {}, "coverage": {}, "second_pass": False}

    def skip_unit(reason: str, detail: str) -> dict:
        record.update(status="skipped", rows=[])
        record["skipped"].append({"path": str(unit.original.path), "reason": reason, "detail": detail})
        return record

    detect = unit.source.detect_faces
    cache_key = None
    if detect:
        settings = {**ctx.detectors.cache_settings(), "plan": plan if not runner.is_identity else None}
        if cfg.detect_every > 1:
            settings["detect_every"] = cfg.detect_every
            if cfg.detect_between == "follow":
                settings["follow"] = follow_settings()
        cache_key = BoxCache.key(unit.original.path, cfg.every if not unit.original.is_image else 1,
                                 cfg.max_frames, settings)
    memo = FrameMemo(MEMO_BYTES)

    def detection_frames():
        def decoded():
            return memo.record(open_frames(unit.original, cfg))

        for index, frame in background(decoded, PREFETCH):
            yield index, runner(frame, index)

    fakes = [_Fake(f) for f in unit.fakes]
    video = f"{unit.source.label}/{unit.original.video_id}"
    blends_wanted = cfg.self_blend.per_real > 0 and unit.split in cfg.self_blend.splits
    blend_rows: list[dict] = []
    base_row = {"split": unit.split, "source": unit.source.label, "augmentation": plan_label(plan)}
    real_rows: list[dict] = []
    n_frames = n_with_face = 0
    t0 = time.perf_counter()
    tracked = iter_face_tracks(detection_frames, ctx.detectors, cfg.faces, cache=ctx.cache,
                               cache_id=unit.file_key, cache_key=cache_key,
                               crop_frames=lambda: background(
                                   lambda: _lockstep(unit, ctx, runner, fakes, memo), PREFETCH),
                               margin=cfg.faces.margin if detect else 1.0,
                               whole_frame=not detect,
                               detect_every=cfg.detect_every if detect else 1,
                               between=cfg.detect_between)
    try:
        batch: list[tuple] = []
        for tf in tracked:
            if n_frames == 0:
                t0 = timer.add("detect", t0)
                record["second_pass"] = tf.second_pass
            n_frames += 1
            n_with_face += bool(tf.faces)
            for face in tf.faces:
                extra = {"coverage": round(tf.coverage, 4), "detection_pass": face.detection_pass}
                if unit.source.include_reals:
                    t0 = time.perf_counter()
                    real_rows.append(ctx.writer.write(
                        face=face.crop, label="real", video=video, frame=tf.index, track=face.track,
                        identity=unit.original.identity, method="original", original="",
                        dataset_split=unit.original.dataset_split or "", **base_row, **extra))
                    timer.add("write", t0)
                    if blends_wanted:
                        t0 = time.perf_counter()
                        batch += _self_blends(face.crop, unit, tf.index, face.track, video, extra,
                                              cfg, blend_rows)
                        timer.add("blend", t0)
                for k, fake_frame in tf.payload.items():
                    t0 = time.perf_counter()
                    fake_crop = _crop_like(fake_frame, face, cfg, detect)
                    timer.add("crop", t0)
                    item = fakes[k].item
                    batch.append(_Pair(fakes[k].rows, face.crop, fake_crop, {
                        "video": f"{unit.source.label}/{item.video_id}", "frame": tf.index,
                        "track": face.track, "identity": item.identity, "method": item.method,
                        "original": video, "dataset_split": item.dataset_split or "", **extra}))
            if len(batch) >= cfg.faces.batch_size * max(1, len(fakes)):
                _write_pairs(batch, ctx, base_row)
                batch = []
        if batch:
            _write_pairs(batch, ctx, base_row)
    except VideoDecodeError as exc:
        return skip_unit("original unreadable", exc.reason)
    except FaceSkipError as exc:  # multi-face, too small: the unit's fakes go with their original
        return skip_unit(exc.reason, exc.problem)
    finally:  # an error mid-unit (a failed PNG save) stops the decode threads now, not at GC
        tracked.close()
    if not n_frames:
        return skip_unit("no frame decoded", "")
    record["coverage"] = {video: round(n_with_face / n_frames, 4)}
    if not n_with_face:
        return skip_unit("no face found", f"{n_frames} frames searched")
    record["videos_read"] = 1
    rows = list(real_rows) + blend_rows
    for fk in fakes:
        if fk.problem is not None:
            record["skipped"].append({"path": str(fk.item.path), "reason": fk.problem[0],
                                      "detail": fk.problem[1]})
            continue
        record["videos_read"] += 1
        if fk.ended_at is not None:
            record["notes"]["fake shorter than original"] = record["notes"].get(
                "fake shorter than original", 0) + 1
        rows += fk.rows
    record["rows"] = rows
    return record


def _crop_like(frame: np.ndarray, face, cfg: BuildConfig, detect: bool) -> np.ndarray:
    return crop_face(frame, face.box, margin=cfg.faces.margin if detect else 1.0, size=cfg.faces.size)


@dataclass
class _Pair:
    """One (real crop, fake crop) pair waiting for its MRI; its row goes to ``sink``."""

    sink: list
    real: np.ndarray
    fake: np.ndarray
    fields: dict


def _self_blends(crop: np.ndarray, unit: Unit, frame: int, track: int, video: str, extra: dict,
                 cfg: BuildConfig, sink: list) -> list[_Pair]:
    """``self_blend.per_real`` SBI-style fakes of one real crop (BuildSelfBlendConfig), each
    seeded by (seed, unit, frame, track, k)."""
    pairs = []
    unit_seed = zlib.crc32(unit.key.encode("utf-8"))
    for k in range(cfg.self_blend.per_real):
        rng = np.random.default_rng([cfg.seed, unit_seed, frame, track, k])
        blend = self_blend(crop, rng, sbi_params(rng))
        pairs.append(_Pair(sink, crop, blend.fake, {
            "video": f"{video}~sbi{k}", "frame": frame, "track": track,
            "identity": unit.original.identity, "method": "self_blend", "original": video,
            "dataset_split": unit.original.dataset_split or "", **extra}))
    return pairs


def _write_pairs(batch: list[_Pair], ctx: Context, base_row: dict) -> None:
    """MRIs of all (real crop, fake crop) pairs of a batch in one call of the build's metric, then the PNGs;
    each pair's row goes to its sink (its fake video's rows, or the unit's self-blends)."""
    import torch

    timer = ctx.timer
    t0 = time.perf_counter()
    real = torch.from_numpy(np.stack([b.real for b in batch])).permute(0, 3, 1, 2).float()
    fake = torch.from_numpy(np.stack([b.fake for b in batch])).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        mri = perceptual.metric_map(real, fake, metric=ctx.cfg.mri_metric, data_range=255.0)
    mri_u8 = perceptual.mri_to_uint8(mri.permute(0, 2, 3, 1))
    t0 = timer.add("ssim", t0)
    for pair, m in zip(batch, mri_u8, strict=True):
        pair.sink.append(ctx.writer.write(face=pair.fake, mri=m, label="fake", **base_row,
                                          **pair.fields))
    timer.add("write", t0)


__all__ = ["Context", "StageTimer", "open_frames", "process_unit"]
