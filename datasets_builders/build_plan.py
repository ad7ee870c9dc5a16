"""Planning a build: read every source, group fakes with their originals into units, make ids
unique, sample, split by identity, shard. Deterministic: the same config gives the same plan.

Splits group by identity: every identity appearing in a unit (a face swap shows two people)
is linked, and connected groups are assigned to train/val/test by a seeded hash, so no person
and no video is in two splits, and adding data does not move existing groups... except
through the exact-count rounding of small datasets.

Ids: names are sanitised into ids (``x y.mp4`` and ``x_y.mp4`` both give ``x_y``). Items of one
source whose ids collide while their files differ all get ``<id>-<8 hex digits of the file's
path>`` (deterministic, so a resumed build finds the same ids); the same file listed twice is
listed once (counted as a skip); the same file listed with two different labels or originals
is an error naming the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from datasets_builders.build_config import BuildConfig, BuildError, BuildSourceConfig, parse_shard
from datasets_builders.sources import VideoItem, read_source
from mrigan.grouping import DisjointSets


@dataclass(frozen=True)
class Unit:
    """An original video (or image) and every fake made from it."""

    key: str  # "<source>/<original video id>", unique
    source: BuildSourceConfig
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
    inputs: list[Path]  # every listed input file (guards the output location)


def _hash01(*parts: object) -> float:
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") / 2.0**64


def _path_tag(path: Path) -> str:
    return hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:8]


def unique_items(items: list[VideoItem], skipped: list[dict]) -> list[VideoItem]:
    """One item per file, and one file per id (see the module doc)."""
    by_path: dict[Path, VideoItem] = {}
    for item in items:
        key = Path(item.path).resolve()
        seen = by_path.get(key)
        if seen is None:
            by_path[key] = item
        elif (seen.label, seen.original and Path(seen.original).resolve()) == (
                item.label, item.original and Path(item.original).resolve()):
            skipped.append({"path": str(item.path), "reason": "listed twice"})
        else:
            raise BuildError(f"listed twice with different labels or originals ({seen.label} vs "
                             f"{item.label})", item.path)
    unique = list(by_path.values())
    ids = Counter(i.video_id for i in unique)
    renamed = {}
    for item in unique:
        if ids[item.video_id] > 1:
            renamed[Path(item.path).resolve()] = f"{item.video_id}-{_path_tag(item.path)}"
    if not renamed:
        return unique
    out = []
    for item in unique:
        new_id = renamed.get(Path(item.path).resolve(), item.video_id)
        orig_id = item.original_id
        if item.original is not None and Path(item.original).resolve() in renamed:
            orig_id = renamed[Path(item.original).resolve()]
        out.append(dataclasses.replace(item, video_id=new_id, original_id=orig_id))
    return out


def plan_units(cfg: BuildConfig) -> Plan:
    """Read every source, group fakes with their originals, sample, split. Deterministic."""
    if not cfg.sources:
        raise BuildError("no sources configured (add `sources:` to the config or use --csv)")
    units: list[Unit] = []
    skipped: list[dict] = []
    inputs: list[Path] = []
    names = [s.label for s in cfg.sources]
    if len(set(names)) != len(names):
        raise BuildError(f"source names must be unique, got {names}; set `name:` per source")
    for scfg in cfg.sources:
        listing = read_source(scfg.kind, scfg.root, name=scfg.label, **scfg.options)
        skipped += [{"path": s.path, "reason": s.reason} for s in listing.skipped]
        items = unique_items(listing.items, skipped)
        inputs += [i.path for i in items]
        reals = {Path(i.path).resolve(): i for i in items if i.label == "real"}
        fakes_of: dict[Path, list[VideoItem]] = defaultdict(list)
        implied: dict[Path, VideoItem] = {}
        listed_fakes = {Path(i.path).resolve() for i in items if i.label == "fake"}
        for item in items:
            if item.label != "fake":
                continue
            if item.original is None:
                skipped.append({"path": str(item.path), "reason": "fake without original"})
            elif not item.original.is_file():
                skipped.append({"path": str(item.path), "reason": "original missing"})
            elif Path(item.original).resolve() == Path(item.path).resolve():
                # its frames would become real rows and its fake rows black MRIs
                skipped.append({"path": str(item.path), "reason": "fake listed as its own original"})
            elif Path(item.original).resolve() in listed_fakes:
                skipped.append({"path": str(item.path), "reason": "original is listed as a fake"})
            else:
                original = Path(item.original).resolve()
                fakes_of[original].append(item)
                if original not in reals and original not in implied:
                    inputs.append(item.original)
                    implied[original] = VideoItem(
                        path=item.original, label="real", source=item.source,
                        video_id=item.original_id or item.original.stem, identity=item.identity,
                        method="original", is_image=item.is_image)
        originals = {**implied, **reals}
        taken = {i.video_id for i in items}
        counts = Counter(o.video_id for o in originals.values())
        for path, original in originals.items():  # implied originals whose ids collide
            if path in implied and (counts[original.video_id] > 1 or original.video_id in taken):
                originals[path] = dataclasses.replace(
                    original, video_id=f"{original.video_id}-{_path_tag(original.path)}")
        for path, original in sorted(originals.items(), key=lambda kv: kv[1].video_id):
            unit = Unit(key=f"{scfg.label}/{original.video_id}", source=scfg, original=original,
                        fakes=tuple(sorted(fakes_of.get(path, ()), key=lambda i: i.video_id)))
            if scfg.fraction >= 1.0 or _hash01(cfg.seed, "fraction", unit.key) < scfg.fraction:
                units.append(unit)
    keys = [u.key for u in units]
    if len(set(keys)) != len(keys):
        dup = sorted(k for k, c in Counter(keys).items() if c > 1)
        raise BuildError(f"duplicate video ids {dup[:5]}: two originals map to one id")
    units = assign_splits(sorted(units, key=lambda u: u.key), cfg)
    return Plan(units, skipped, inputs)


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

    def count(frac: float) -> int:
        c = int(round(frac * n))
        return max(c, 1) if frac > 0 and n >= 3 else c

    n_test = count(sp.test)
    n_val = min(count(sp.val), max(n - n_test - 1, 0))
    split_of = {g: "test" if i < n_test else "val" if i < n_test + n_val else "train"
                for i, g in enumerate(groups)}
    return [Unit(u.key, u.source, u.original, u.fakes, split_of[find(nodes(u)[0])]) for u in units]


def shard_units(units: list[Unit], shard: str) -> list[Unit]:
    """The k-th of n parts: every n-th unit of the sorted list, starting at k - 1."""
    k, n = parse_shard(shard)
    return [u for i, u in enumerate(units) if i % n == k - 1]


__all__ = ["Plan", "Unit", "assign_splits", "plan_units", "shard_units", "unique_items"]
