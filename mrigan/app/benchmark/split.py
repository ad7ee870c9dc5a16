"""Stage 1: the identity-grouped split of the paired videos.

Both steps use the MRI-DF builder's planner (``build_plan.plan_units`` ->
``assign_splits``, union-find of ``mrigan.grouping`` over every identity a unit shows), so the
split is the builder's own, deterministic for a seed:

1. the pairs CSV's units are split into *test* (held out of every training stage) and the rest;
2. the rest is planned again exactly as the MRI-DF stage will plan it (same CSV, same
   ``split.val``), which names the *validation* identities the MRI-DF build will put in its
   ``val`` split.

Written: ``trainval.csv`` (the MRI-DF stage's input), ``val.csv`` and ``test.csv`` (the face-set
stages' inputs; ``test.csv`` also feeds the held-out MRI-DF used only to measure the GAN),
``split.json`` (identities and videos of each split).
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from datasets_builders.mri_df import BuildConfig, BuildSourceConfig, BuildSplitConfig, plan_units
from mrigan.app.benchmark.config import BenchmarkConfig
from mrigan.app.benchmark.stages import BenchmarkError
from mrigan.fileio import atomic_write_json, atomic_write_text

CSV_COLUMNS = ("path", "label", "original", "identity", "method")


def _plan(sources, *, val: float, test: float, seed: int):
    cfg = BuildConfig(out="unused", sources=tuple(sources), seed=seed,
                      split=BuildSplitConfig(val=val, test=test))
    return plan_units(cfg)


def pair_sources(cfg: BenchmarkConfig) -> tuple[BuildSourceConfig, ...]:
    """The paired videos: ``sources`` (dataset layouts), else the ``pairs`` CSV."""
    if cfg.sources:
        return cfg.sources
    return (BuildSourceConfig(kind="csv", root=str(cfg.pairs)),)


def _rows(units, base: Path) -> list[list[str]]:
    """CSV rows of the units' videos, paths relative to the written CSV's folder."""
    def rel(p) -> str:
        return os.path.relpath(os.path.abspath(p), base)

    rows = []
    for u in units:
        o = u.original
        rows.append([rel(o.path), "real", "", o.identity, "original"])
        rows += [[rel(f.path), "fake", rel(o.path), f.identity, f.method] for f in u.fakes]
    return rows


def _write_csv(path: Path, rows: list[list[str]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def _describe(units) -> dict:
    return {"identities": sorted({i for u in units for it in (u.original, *u.fakes)
                                  for i in it.identities}),
            "videos": sorted(os.path.normpath(os.path.abspath(it.path)) for u in units for it in (u.original, *u.fakes)),
            "fakes": sum(len(u.fakes) for u in units), "reals": len(units)}


def split_stage(cfg: BenchmarkConfig, folder: Path) -> dict:
    pairs = cfg.pairs or cfg.sources[0].root
    first = _plan(pair_sources(cfg), val=0.0, test=cfg.split.test, seed=cfg.split.seed)
    units = [u for u in first.units if u.fakes]
    if len(units) < 3:
        raise BenchmarkError(f"the benchmark needs real/fake pairs of at least 3 identity groups "
                         f"(train, validation, test); found {len(units)} originals with fakes",
                         pairs)
    test = [u for u in units if u.split == "test"]
    rest = [u for u in units if u.split != "test"]
    _write_csv(folder / "trainval.csv", _rows(rest, folder))
    _write_csv(folder / "test.csv", _rows(test, folder))
    trainval = (BuildSourceConfig(kind="csv", root=str(folder / "trainval.csv")),)
    second = _plan(trainval, val=cfg.split.val, test=0.0, seed=cfg.split.seed)
    val = [u for u in second.units if u.split == "val"]
    train = [u for u in second.units if u.split == "train"]
    _write_csv(folder / "val.csv", _rows(val, folder))
    splits = {"train": _describe(train), "val": _describe(val), "test": _describe(test)}
    for a in splits:
        for b in splits:
            shared = set(splits[a]["identities"]) & set(splits[b]["identities"])
            if a < b and shared:  # the planner's grouping guarantees this; checked anyway
                raise BenchmarkError(f"identities {sorted(shared)} in both {a} and {b}", pairs)
    skipped = first.skipped
    result = {"splits": splits, "skipped": skipped,
              "trainval_csv": str(folder / "trainval.csv"), "val_csv": str(folder / "val.csv"),
              "test_csv": str(folder / "test.csv")}
    atomic_write_json(folder / "split.json", result)
    return result


__all__ = ["pair_sources", "split_stage"]
