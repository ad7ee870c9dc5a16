"""``build_mri_df(config)``: the MRI-DF dataset of (face, MRI) pairs from real deepfake datasets.

For every original video (a *unit*: the original and every fake made from it) the builder
decodes every Nth frame of the original and its fakes in lockstep, applies the unit's
augmentation plan identically to all of them, detects faces on the ORIGINAL (boxes cached as
JSON and reused), tracks them, cuts the same square from every video and writes

* the real crop with a black MRI,
* each fake crop with ``MRI = clip(1 - SSIM(real crop, fake crop), 0, 1)``.

Why units: everything a fake needs (its original's frames and boxes) is inside its unit, so
units are independent. That gives resumability (a unit's rows are recorded in
``done/<unit>.json`` only after all its PNGs are written; a rerun skips recorded units and a
killed build loses at most the unit in progress), sharding (``shard: k/n`` takes every n-th
unit of the sorted list; all shards may write to one output folder) and a manifest that is
the same whatever the order, interruptions or sharding (rows are joined in unit order).

Splits group by identity: every identity appearing in a unit (a face swap shows two people)
is linked, and connected groups are assigned to train/val/test by a seeded hash, so no person
and no video is in two splits, and adding data does not move existing groups... except
through the exact-count rounding of small datasets.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from datasets_builders.augment import PlanRunner, make_plan, plan_label, save_plan
from datasets_builders.faces import (
    PAPER_THRESHOLDS,
    BoxCache,
    FaceBox,
    FaceDetector,
    FaceTracker,
    crop_face,
    detector_settings,
)
from datasets_builders.frames import VideoDecodeError, iter_frames
from datasets_builders.sources import VideoItem, read_source
from mrigan import perceptual
from mrigan.config import save_config
from mrigan.errors import MriganError
from mrigan.fileio import atomic_save_image, atomic_write_json, read_image
from mrigan.grouping import DisjointSets
from mrigan.mri_df_format import write_manifest

# ----------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class SourceConfig:
    """One dataset to read. ``options`` go to its reader (e.g. ``compression``, ``methods``
    for ``ffpp``; ``metadata`` for ``dfdc``; ``identity_from`` for ``images``)."""

    kind: str = "csv"  # ffpp | dfdc | celebdf | csv | images
    root: str = ""  # dataset folder (or the CSV file)
    name: str = ""  # the manifest's ``source`` value; default: kind
    fraction: float = 1.0  # share of its units (original videos) used; paper: 0.5 of DFDC
    detect_faces: bool = True  # False for folders of images that already are face crops
    include_reals: bool = True  # write (real crop, black MRI) rows for the originals
    options: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.name or self.kind


@dataclass(frozen=True)
class FaceConfig:
    device: str = "auto"
    thresholds: tuple[float, float, float] = PAPER_THRESHOLDS
    min_face_size: int = 40  # in full-frame pixels
    max_side: int | None = 960  # detect on frames downscaled to this longer side
    batch_size: int = 8
    margin: float = 1.3  # crop side = margin * max(box w, box h)
    size: int = 256  # crop side in the dataset (paper: 256)
    iou_threshold: float = 0.3  # face tracks across sampled frames


@dataclass(frozen=True)
class AugmentConfig:
    augment_fraction: float = 0.0  # share of units given one augmentation
    distraction_fraction: float = 0.0  # share of units given a distraction
    augmentations: tuple[str, ...] = ()  # restrict to these names (default: all)


@dataclass(frozen=True)
class SplitConfig:
    val: float = 0.1
    test: float = 0.1


@dataclass(frozen=True)
class BuildConfig:
    out: str = "runs/mri_df"
    sources: tuple[SourceConfig, ...] = ()
    every: int = 10  # decode every Nth frame
    max_frames: int | None = None  # per video, after ``every``
    seed: int = 0
    shard: str = "1/1"  # k/n: build the k-th of n deterministic parts
    progress: bool = True
    faces: FaceConfig = field(default_factory=FaceConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    split: SplitConfig = field(default_factory=SplitConfig)


class BuildError(MriganError, RuntimeError):
    """A build that cannot start or finish (bad config, output inside an input, pending shards)."""


def parse_shard(text: str) -> tuple[int, int]:
    try:
        k, n = (int(v) for v in str(text).split("/"))
    except ValueError:
        raise BuildError(f"shard must look like k/n (e.g. 2/8), got {text!r}") from None
    if not 1 <= k <= n:
        raise BuildError(f"shard {text!r}: need 1 <= k <= n")
    return k, n


# ----------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class Unit:
    """An original video (or image) and every fake made from it."""

    key: str  # "<source>/<original video id>", unique
    source: SourceConfig
    original: VideoItem
    fakes: tuple[VideoItem, ...]
    split: str = "train"

    @property
    def file_key(self) -> str:
        return self.key.replace("/", "__")


@dataclass
class Plan:
    units: list[Unit]
    skipped: list[dict]  # problems found while listing: {"path", "reason"}


def _hash01(*parts: object) -> float:
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") / 2.0**64


def _check_out_not_in_inputs(out: Path, cfg: BuildConfig) -> None:
    """Refuse an output folder inside a dataset folder (a CSV's own folder is not one)."""
    out = out.resolve()
    for s in cfg.sources:
        if s.kind == "csv":
            continue
        root = Path(s.root).resolve()
        if out == root or root in out.parents:
            raise BuildError(f"output folder {out} is inside the input folder {root}; "
                             "choose an output outside every dataset")


def _check_no_input_in_out(out: Path, items: list[VideoItem]) -> None:
    """Refuse an output folder that holds input files: outputs and inputs never mix."""
    out = out.resolve()
    for item in items:
        if out in item.path.resolve().parents:
            raise BuildError(f"input {item.path} is inside the output folder {out}; "
                             "choose an output folder that holds no input")


def plan_units(cfg: BuildConfig) -> Plan:
    """Read every source, group fakes with their originals, sample, split. Deterministic."""
    if not cfg.sources:
        raise BuildError("no sources configured (add `sources:` to the config or use --csv)")
    units: list[Unit] = []
    skipped: list[dict] = []
    names = [s.label for s in cfg.sources]
    if len(set(names)) != len(names):
        raise BuildError(f"source names must be unique, got {names}; set `name:` per source")
    for scfg in cfg.sources:
        if not 0.0 <= scfg.fraction <= 1.0:
            raise BuildError(f"source {scfg.label}: fraction must be in [0, 1], got {scfg.fraction}")
        listing = read_source(scfg.kind, scfg.root, name=scfg.label, **scfg.options)
        _check_no_input_in_out(Path(cfg.out), listing.items)
        skipped += [{"path": s.path, "reason": s.reason} for s in listing.skipped]
        reals = {i.path: i for i in listing.items if i.label == "real"}
        fakes_of: dict[Path, list[VideoItem]] = defaultdict(list)
        implied: dict[Path, VideoItem] = {}
        for item in listing.items:
            if item.label != "fake":
                continue
            if item.original is None:
                skipped.append({"path": str(item.path), "reason": "fake without original"})
            elif not item.original.is_file():
                skipped.append({"path": str(item.path), "reason": "original missing"})
            else:
                fakes_of[item.original].append(item)
                if item.original not in reals and item.original not in implied:
                    implied[item.original] = VideoItem(
                        path=item.original, label="real", source=item.source,
                        video_id=item.original_id or item.original.stem, identity=item.identity,
                        method="original", is_image=item.is_image)
        for path, original in sorted({**implied, **reals}.items(), key=lambda kv: kv[1].video_id):
            unit = Unit(key=f"{scfg.label}/{original.video_id}", source=scfg, original=original,
                        fakes=tuple(sorted(fakes_of.get(path, ()), key=lambda i: i.video_id)))
            if scfg.fraction >= 1.0 or _hash01(cfg.seed, "fraction", unit.key) < scfg.fraction:
                units.append(unit)
    keys = [u.key for u in units]
    if len(set(keys)) != len(keys):
        dup = sorted(k for k, c in Counter(keys).items() if c > 1)
        raise BuildError(f"duplicate video ids {dup[:5]}: two originals map to one id")
    units = assign_splits(sorted(units, key=lambda u: u.key), cfg)
    return Plan(units, skipped)


def assign_splits(units: list[Unit], cfg: BuildConfig) -> list[Unit]:
    """Union-find over the identities of each unit, then whole groups go to one split."""
    sets = DisjointSets()
    find = sets.find

    def nodes(u: Unit) -> list[str]:
        items = (u.original, *u.fakes)
        return sorted({f"{u.source.label}:{ident}" for it in items for ident in it.identities})

    for u in units:
        ns = nodes(u)
        for other in ns[1:]:
            sets.union(ns[0], other)
    groups = sorted({find(nodes(u)[0]) for u in units},
                    key=lambda g: (_hash01(cfg.seed, "split", g), g))
    n = len(groups)
    sp = cfg.split
    if sp.val < 0 or sp.test < 0 or sp.val + sp.test >= 1:
        raise BuildError(f"split fractions val={sp.val} test={sp.test} must be >= 0 and sum < 1")

    def count(frac: float) -> int:
        c = int(round(frac * n))
        return max(c, 1) if frac > 0 and n >= 3 else c

    n_test = count(sp.test)
    n_val = min(count(sp.val), max(n - n_test - 1, 0))
    split_of = {g: "test" if i < n_test else "val" if i < n_test + n_val else "train"
                for i, g in enumerate(groups)}
    return [Unit(u.key, u.source, u.original, u.fakes, split_of[find(nodes(u)[0])]) for u in units]


def shard_units(units: list[Unit], shard: str) -> list[Unit]:
    k, n = parse_shard(shard)
    return [u for i, u in enumerate(units) if i % n == k - 1]


# ----------------------------------------------------------------------------- processing


class StageTimer:
    """Seconds spent per stage (decode, augment, detect, crop, ssim, write)."""

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
    _detector: FaceDetector | None = None

    @property
    def detector(self) -> FaceDetector:
        if self._detector is None:
            f = self.cfg.faces
            self._detector = FaceDetector(device=f.device, thresholds=f.thresholds,
                                          min_face_size=f.min_face_size, max_side=f.max_side,
                                          batch_size=f.batch_size)
        return self._detector

    def detector_settings(self) -> dict:
        """What cached boxes depend on, without loading MTCNN when every box is cached."""
        if self._detector is not None:
            return self._detector.settings()
        f = self.cfg.faces
        return detector_settings(f.thresholds, f.min_face_size, f.max_side)

    def black_mri(self) -> str:
        rel = f"mri/black_{self.cfg.faces.size}.png"
        if not (self.out / rel).is_file():
            size = self.cfg.faces.size
            atomic_save_image(self.out / rel, np.zeros((size, size, 3), np.uint8))
        return rel


def _frames(item: VideoItem, cfg: BuildConfig) -> Iterator[tuple[int, np.ndarray]]:
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


def _process_unit(unit: Unit, ctx: Context) -> dict:
    """Decode, augment, detect, crop, MRI, write one unit; return its record (not yet saved)."""
    cfg, timer = ctx.cfg, ctx.timer
    plan = make_plan(cfg.seed, unit.key, augment_fraction=cfg.augment.augment_fraction,
                     distraction_fraction=cfg.augment.distraction_fraction,
                     augmentations=cfg.augment.augmentations or None)
    runner = PlanRunner(plan)
    if not runner.is_identity:
        save_plan(ctx.out / "plans" / f"{unit.file_key}.json", plan)
    aug_label = plan_label(plan)
    record = {"unit": unit.key, "status": "done", "rows": [], "videos_read": 0, "skipped": [],
              "notes": {}}

    def skip_unit(reason: str, detail: str) -> dict:
        record.update(status="skipped", rows=[])
        record["skipped"].append({"path": str(unit.original.path), "reason": reason, "detail": detail})
        return record

    try:
        orig_frames = _frames(unit.original, cfg)
    except VideoDecodeError as exc:
        return skip_unit("original unreadable", exc.reason)
    fakes = [_Fake(f) for f in unit.fakes]
    for fk in fakes:
        try:
            fk.frames = _frames(fk.item, cfg)
        except VideoDecodeError as exc:
            fk.problem = ("fake unreadable", exc.reason)

    detect = unit.source.detect_faces
    cache_key = None
    cached: dict[int, list[FaceBox]] | None = None
    if detect:
        settings = {**ctx.detector_settings(), "plan": plan if not runner.is_identity else None}
        cache_key = BoxCache.key(unit.original.path, cfg.every if not unit.original.is_image else 1,
                                 cfg.max_frames, settings)
        hit = ctx.cache.load(unit.file_key, cache_key)
        cached = dict(zip(*hit, strict=True)) if hit is not None else None
    all_indices: list[int] = []
    all_boxes: list[list[FaceBox]] = []
    tracker = FaceTracker(cfg.faces.iou_threshold)
    real_rows: list[dict] = []
    black = ctx.black_mri() if unit.source.include_reals else ""
    base_row = {"split": unit.split, "source": unit.source.label, "augmentation": aug_label}

    def flush(batch: list[tuple[int, np.ndarray, dict[int, np.ndarray]]]) -> None:
        frames = [b[1] for b in batch]
        t0 = time.perf_counter()
        if not detect:
            h, w = frames[0].shape[:2]
            boxes = [[FaceBox(0.0, 0.0, float(w), float(h), 1.0)] for _ in frames]
        elif cached is not None and all(b[0] in cached for b in batch):
            boxes = [cached[b[0]] for b in batch]
        else:
            boxes = ctx.detector.detect(frames)
            t0 = timer.add("detect", t0)
        pairs: list[tuple[_Fake, str, str, np.ndarray, np.ndarray]] = []
        for (index, frame, fake_frames), frame_boxes in zip(batch, boxes, strict=True):
            all_indices.append(index)
            all_boxes.append(frame_boxes)
            for track, box in zip(tracker.update(frame_boxes), frame_boxes, strict=True):
                t0 = time.perf_counter()
                margin = cfg.faces.margin if detect else 1.0
                real_crop = crop_face(frame, box, margin=margin, size=cfg.faces.size)
                name = f"f{index:06d}_t{track}.png"
                t0 = timer.add("crop", t0)
                if unit.source.include_reals:
                    rel = f"faces/{unit.source.label}/{unit.original.video_id}/{name}"
                    atomic_save_image(ctx.out / rel, real_crop)
                    t0 = timer.add("write", t0)
                    real_rows.append({"image": rel, "mri": black, "label": "real",
                                      "video": f"{unit.source.label}/{unit.original.video_id}",
                                      "identity": unit.original.identity, "method": "original",
                                      "frame": index, "track": track, "original": "",
                                      "dataset_split": unit.original.dataset_split or "", **base_row})
                for k, fake_frame in fake_frames.items():
                    fake_crop = crop_face(fake_frame, box, margin=margin, size=cfg.faces.size)
                    pairs.append((fakes[k], name, str(index) + "/" + str(track), real_crop, fake_crop))
                t0 = timer.add("crop", t0)
        if pairs:
            _write_fake_pairs(pairs, unit, ctx, base_row)

    batch: list[tuple[int, np.ndarray, dict[int, np.ndarray]]] = []
    try:
        while True:
            try:
                index, frame = _timed_next(orig_frames, timer)
            except StopIteration:
                break
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
            batch.append((index, frame, fake_frames))
            if len(batch) >= cfg.faces.batch_size:
                flush(batch)
                batch = []
        if batch:
            flush(batch)
    except VideoDecodeError as exc:
        return skip_unit("original unreadable", exc.reason)
    if detect and cached is None:
        ctx.cache.save(unit.file_key, cache_key, all_indices, all_boxes)
    if not all_indices:
        return skip_unit("no frame decoded", "")
    if not any(all_boxes):
        return skip_unit("no face found", f"{len(all_indices)} frames searched")
    record["videos_read"] = 1
    rows = list(real_rows)
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


def _write_fake_pairs(pairs, unit: Unit, ctx: Context, base_row: dict) -> None:
    """MRIs of all (real crop, fake crop) pairs of a frame batch in one SSIM call, then PNGs."""
    import torch


    timer = ctx.timer
    t0 = time.perf_counter()
    real = torch.from_numpy(np.stack([p[3] for p in pairs])).permute(0, 3, 1, 2).float()
    fake = torch.from_numpy(np.stack([p[4] for p in pairs])).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        mri = perceptual.mri_map(real, fake, data_range=255.0)
    mri_u8 = perceptual.mri_to_uint8(mri.permute(0, 2, 3, 1))
    t0 = timer.add("ssim", t0)
    for (fk, name, where, _real, fake_crop), m in zip(pairs, mri_u8, strict=True):
        item = fk.item
        img_rel = f"faces/{unit.source.label}/{item.video_id}/{name}"
        mri_rel = f"mri/{unit.source.label}/{item.video_id}/{name}"
        atomic_save_image(ctx.out / img_rel, fake_crop)
        atomic_save_image(ctx.out / mri_rel, m)
        index, track = (int(v) for v in where.split("/"))
        fk.rows.append({"image": img_rel, "mri": mri_rel, "label": "fake",
                        "video": f"{unit.source.label}/{item.video_id}", "identity": item.identity,
                        "method": item.method, "frame": index, "track": track,
                        "original": f"{unit.source.label}/{unit.original.video_id}",
                        "dataset_split": item.dataset_split or "", **base_row})
    timer.add("write", t0)


# ----------------------------------------------------------------------------- the build


@dataclass
class BuildSummary:
    units_total: int = 0
    units_in_shard: int = 0
    units_built: int = 0  # this run
    units_resumed: int = 0  # found done from an earlier run
    units_pending: int = 0  # of other shards, not done yet
    videos_read: int = 0
    pairs_written: int = 0
    real_rows: int = 0
    fake_rows: int = 0
    skipped: dict = field(default_factory=dict)
    notes: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    frames_decoded: int = 0
    manifest: str | None = None

    def lines(self) -> list[str]:
        out = [f"units (original videos/images): {self.units_total} total, {self.units_in_shard} in "
               f"this shard, {self.units_built} built now, {self.units_resumed} already done"]
        if self.units_pending:
            out.append(f"waiting for other shards: {self.units_pending} units not built yet")
        out.append(f"videos read: {self.videos_read}")
        skipped = sum(self.skipped.values())
        out.append(f"skipped: {skipped}" + "".join(f"\n  {n:6d}  {r}" for r, n in self.skipped.items()))
        for note, n in self.notes.items():
            out.append(f"note: {n} x {note}")
        out.append(f"pairs written: {self.pairs_written} ({self.fake_rows} fake, {self.real_rows} real)")
        if self.manifest:
            out.append(f"manifest: {self.manifest}")
        return out


def _record_path(out: Path, unit: Unit) -> Path:
    return out / "done" / f"{unit.file_key}.json"


def _load_record(out: Path, unit: Unit) -> dict | None:
    path = _record_path(out, unit)
    if not path.is_file():
        return None
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None  # a torn record cannot exist (atomic writes); an edited one is rebuilt
    return rec if rec.get("unit") == unit.key else None


def build_mri_df(cfg: BuildConfig, *, log=print, detector: FaceDetector | None = None) -> BuildSummary:
    """Build (or resume, or build one shard of) MRI-DF under ``cfg.out``; see the module doc.

    ``detector``: an already loaded ``FaceDetector`` to use instead of one built from
    ``cfg.faces`` (reuse one model across several builds); its settings go into the box cache
    key either way.
    """
    out = Path(cfg.out)
    _check_out_not_in_inputs(out, cfg)
    if cfg.every < 1:
        raise BuildError(f"every must be >= 1, got {cfg.every}")
    plan = plan_units(cfg)
    mine = shard_units(plan.units, cfg.shard)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / ("config.yaml" if cfg.shard == "1/1" else
                            f"config.shard-{cfg.shard.replace('/', '-of-')}.yaml"))
    timer = StageTimer()
    ctx = Context(cfg, out, timer, BoxCache(out / "boxes"), detector)
    summary = BuildSummary(units_total=len(plan.units), units_in_shard=len(mine))
    bar = _progress(mine, cfg.progress)
    pairs = 0
    for unit in bar:
        if _load_record(out, unit) is not None:
            summary.units_resumed += 1
            continue
        record = _process_unit(unit, ctx)
        atomic_write_json(_record_path(out, unit), record, indent=None)
        summary.units_built += 1
        pairs += len(record["rows"])
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(pairs=pairs, refresh=False)
    summary.seconds = {k: round(v, 3) for k, v in timer.seconds.items()}
    summary.frames_decoded = timer.frames
    _summarise(plan, out, summary, write=True)
    for line in summary.lines():
        log(line)
    return summary


def merge_shards(cfg: BuildConfig, *, log=print) -> BuildSummary:
    """Join the shards' records into ``manifest.csv`` (fails listing what is still missing)."""
    out = Path(cfg.out)
    plan = plan_units(cfg)
    summary = BuildSummary(units_total=len(plan.units))
    _summarise(plan, out, summary, write=True)
    for line in summary.lines():
        log(line)
    if summary.units_pending:
        raise BuildError(f"{out}: {summary.units_pending} units are not built yet; run the "
                         "missing shards (same config) first")
    return summary


def _summarise(plan: Plan, out: Path, summary: BuildSummary, *, write: bool) -> None:
    rows: list[dict] = []
    skipped = Counter(s["reason"] for s in plan.skipped)
    notes: Counter = Counter()
    pending = 0
    for unit in plan.units:
        rec = _load_record(out, unit)
        if rec is None:
            pending += 1
            continue
        rows += rec["rows"]
        summary.videos_read += rec.get("videos_read", 0)
        skipped.update(s["reason"] for s in rec.get("skipped", ()))
        notes.update(rec.get("notes", {}))
    summary.units_pending = pending
    summary.skipped = dict(sorted(skipped.items()))
    summary.notes = dict(sorted(notes.items()))
    summary.pairs_written = len(rows)
    summary.fake_rows = sum(r["label"] == "fake" for r in rows)
    summary.real_rows = summary.pairs_written - summary.fake_rows
    if write and not pending:
        summary.manifest = str(write_manifest(out, rows))
        atomic_write_json(out / "summary.json", {k: v for k, v in summary.__dict__.items()})


def _progress(units: list[Unit], enabled: bool):
    if not enabled:
        return units
    from tqdm import tqdm

    return tqdm(units, desc="MRI-DF units", unit="video", dynamic_ncols=True)


__all__ = ["AugmentConfig", "BuildConfig", "BuildError", "BuildSummary", "FaceConfig",
           "SourceConfig", "SplitConfig", "build_mri_df", "merge_shards", "plan_units"]
