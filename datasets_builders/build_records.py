"""A build's state on disk: per-unit done records, the settings fingerprint, the writer lock,
and the summary that joins the records into ``manifest.csv``.

Resume: a unit's rows are recorded in ``done/<unit>.json`` only after all its PNGs are written;
a rerun skips recorded units. Every record carries the *fingerprint* of the settings that shape
the output (everything but ``out``, ``shard``, ``progress``, ``workers``, ``faces.device``,
``faces.batch_size``), also kept in ``fingerprint.json``: a rerun with other settings (say
``--size 128`` over a 64 px build) is refused with the differing keys named, unless
``--restart`` (which removes the build's own outputs first). Concurrent writers: each shard
holds ``locks/shard-<k>-of-<n>.lock`` (pid and host) while it runs, so a second build of the
same shard into one folder gets a clear error; a lock left by a dead process on this host is
taken over. Different shards may run at once (that is what shards are for).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from datasets_builders.build_config import NOT_SHAPING, BuildConfig, BuildError
from datasets_builders.build_plan import Plan, Unit
from mrigan.fileio import atomic_write_json
from mrigan.mri_df_format import write_manifest
from mrigan.outputs import FolderLock

FINGERPRINT_NAME = "fingerprint.json"

#: settings added after builds were already being made, with the value that reproduces the
#: older builds: left out of the fingerprint while they hold it, so a folder built before they
#: existed still resumes (any other value changes the output and is refused as usual)
ADDED_LATER = {
    "faces.drop_multi_face": False,
    "faces.multi_face_fraction": 0.1,
    "faces.detector_name": "mtcnn",
    "faces.min_score": 0.5,
    "faces.second_pass_min_score": 0.3,
    "augment.distraction.colors": [],
    "augment.distraction.text_scale": [0.6, 2.5],
    "augment.distraction.whole_units": False,
    "augment.distraction.text_thickness": [1, 5],
    "augment.distraction.count": [1, 1],
    "detect_between": "hold",
    "self_blend.per_real": 0,
}
ADDED_LATER_SOURCE = {"augment": True}
#: settings that change nothing while another one holds a value: left out then (what frames
#: between detections get matters only when there are frames between detections)
MOOT_WHEN = {"detect_between": ("detect_every", 1), "self_blend.splits": ("self_blend.per_real", 0)}


def fingerprint(cfg: BuildConfig) -> dict:
    """The settings that shape the output, as a flat ``{"faces.size": 64, ...}`` dict
    (without the ``ADDED_LATER`` settings while they hold their old behaviour's value)."""
    flat: dict = {}

    def walk(prefix: str, value) -> None:
        if dataclasses.is_dataclass(value):
            value = dataclasses.asdict(value)
        if isinstance(value, dict) and prefix != "sources":
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        elif prefix not in NOT_SHAPING:
            plain = json.loads(json.dumps(value, default=str))
            if prefix == "sources":
                plain = [{k: v for k, v in src.items()
                          if k not in ADDED_LATER_SOURCE or v != ADDED_LATER_SOURCE[k]}
                         for src in plain]
            if prefix not in ADDED_LATER or plain != ADDED_LATER[prefix]:
                flat[prefix] = plain

    walk("", cfg)
    for key, (other, value) in MOOT_WHEN.items():
        if flat.get(other, value) == value:
            flat.pop(key, None)
    return dict(sorted(flat.items()))


def differing_keys(old: dict, new: dict) -> list[str]:
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def _mismatch(out: Path, old: dict, new: dict) -> BuildError:
    keys = differing_keys(old, new)
    shown = ", ".join(f"{k} ({old.get(k)!r} -> {new.get(k)!r})" for k in keys[:6])
    return BuildError(f"this folder holds a build made with other settings: {shown}"
                      + (" ..." if len(keys) > 6 else "") + "; rerun with the same settings, "
                      "another --out, or --restart to rebuild it", out)


def check_fingerprint(out: Path, fp: dict, *, restart: bool) -> None:
    """Refuse (or with ``restart`` clear) a folder built with other settings; record ours."""
    path = out / FINGERPRINT_NAME
    old = None
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BuildError(f"unreadable build fingerprint ({exc}); use --restart", path) from exc
    elif (out / "done").is_dir() and any((out / "done").glob("*.json")):
        old = {}  # records of a build made before fingerprints: settings unknown
    if restart:
        clear_build(out)
    elif old is not None and old != fp:
        raise _mismatch(out, old, fp)
    atomic_write_json(path, fp)


def clear_build(out: Path) -> None:
    """Remove what a build wrote in ``out`` (never anything else; boxes stay: keyed cache)."""
    for name in ("done", "faces", "mri", "plans"):
        if (out / name).is_dir():
            shutil.rmtree(out / name)
    for name in ("manifest.csv", "summary.json", FINGERPRINT_NAME):
        (out / name).unlink(missing_ok=True)


class BuildLock(FolderLock):
    """``locks/shard-<k>-of-<n>.lock`` held while one shard is written (see the module doc)."""

    def __init__(self, out: Path, shard_tag: str) -> None:
        super().__init__(out / "locks" / f"shard-{shard_tag}.lock", "another build",
                         "this shard into this folder", BuildError)


def record_path(out: Path, unit: Unit) -> Path:
    return out / "done" / f"{unit.file_key}.json"


def load_record(out: Path, unit: Unit, fp: dict) -> dict | None:
    """The unit's done record, or None when it is not built. A record of other settings is an
    error (``check_fingerprint`` normally stops that first; shards started apart can meet here)."""
    path = record_path(out, unit)
    if not path.is_file():
        return None
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None  # a torn record cannot exist (atomic writes); an edited one is rebuilt
    if not isinstance(rec, dict) or rec.get("unit") != unit.key:
        return None
    if rec.get("fingerprint") != fp:
        raise _mismatch(path, rec.get("fingerprint") or {}, fp)
    return rec


def save_record(out: Path, unit: Unit, record: dict, fp: dict) -> None:
    atomic_write_json(record_path(out, unit), {**record, "fingerprint": fp}, indent=None)


# ----------------------------------------------------------------------------- the summary


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
    self_blend_rows: int = 0  # of fake_rows: self-blends of real faces (the rest: real methods)
    skipped: dict = field(default_factory=dict)
    notes: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    frames_decoded: int = 0
    coverage: dict = field(default_factory=dict)  # per original video: sampled frames with a face
    second_pass_videos: int = 0  # videos whose low coverage ran the permissive second pass
    faces_second_pass: int = 0  # rows whose face only the second pass found
    manifest: str | None = None
    unit_word: str = "original videos/images"  # what a unit is, in the printed lines
    row_word: str = "pairs"  # what a manifest row is ("faces" for a face set)

    def lines(self) -> list[str]:
        out = [f"units ({self.unit_word}): {self.units_total} total, {self.units_in_shard} in "
               f"this shard, {self.units_built} built now, {self.units_resumed} already done"]
        if self.units_pending:
            out.append(f"waiting for other shards: {self.units_pending} units not built yet")
        out.append(f"videos read: {self.videos_read}")
        skipped = sum(self.skipped.values())
        out.append(f"skipped: {skipped}" + "".join(f"\n  {n:6d}  {r}" for r, n in self.skipped.items()))
        for note, n in self.notes.items():
            out.append(f"note: {n} x {note}")
        if self.coverage:
            values = list(self.coverage.values())
            low = sorted(v for v, c in self.coverage.items() if c < 0.5)
            out.append(f"face coverage: mean {sum(values) / len(values):.2f} over {len(values)} videos"
                       f", lowest {min(values):.2f}; second pass on {self.second_pass_videos} videos "
                       f"found {self.faces_second_pass} faces"
                       + (f"; under 0.5: {', '.join(low[:5])}" + (" ..." if len(low) > 5 else "")
                          if low else ""))
        mix = (f"; of the fakes {self.self_blend_rows} self-blends and "
               f"{self.fake_rows - self.self_blend_rows} real manipulations"
               if self.self_blend_rows else "")
        out.append(f"{self.row_word} written: {self.pairs_written} ({self.fake_rows} fake, "
                   f"{self.real_rows} real{mix})")
        if self.manifest:
            out.append(f"manifest: {self.manifest}")
        return out


def summarise(plan: Plan, out: Path, summary: BuildSummary, fingerprint: dict, *, write: bool) -> None:
    """Join the records of every unit (in unit order) into the summary and, when no unit is
    pending, write ``manifest.csv`` and ``summary.json``."""
    rows: list[dict] = []
    skipped = Counter(s["reason"] for s in plan.skipped)
    notes: Counter = Counter()
    pending = 0
    for unit in plan.units:
        rec = load_record(out, unit, fingerprint)
        if rec is None:
            pending += 1
            continue
        rows += rec["rows"]
        summary.coverage.update(rec.get("coverage", {}))
        summary.second_pass_videos += int(rec.get("second_pass", False))
        summary.videos_read += rec.get("videos_read", 0)
        skipped.update(s["reason"] for s in rec.get("skipped", ()))
        notes.update(rec.get("notes", {}))
    summary.units_pending = pending
    summary.skipped = dict(sorted(skipped.items()))
    summary.notes = dict(sorted(notes.items()))
    summary.pairs_written = len(rows)
    summary.fake_rows = sum(r["label"] == "fake" for r in rows)
    summary.real_rows = summary.pairs_written - summary.fake_rows
    summary.self_blend_rows = sum(r["label"] == "fake" and r.get("method") == "self_blend"
                                  for r in rows)
    summary.faces_second_pass = sum(str(r.get("detection_pass", 1)) == "2" for r in rows)
    if write and not pending:
        summary.manifest = str(write_manifest(out, rows))
        atomic_write_json(out / "summary.json", {k: v for k, v in summary.__dict__.items()})


__all__ = ["BuildLock", "BuildSummary", "check_fingerprint", "clear_build", "differing_keys",
           "fingerprint", "load_record", "record_path", "save_record", "summarise"]
