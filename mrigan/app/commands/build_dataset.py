"""``mrigan build-dataset``: build the MRI-DF dataset (resumable, shardable).

Quick run on a CSV listing (``path,label[,original,identity,method]``, paths relative to it)::

    mrigan build-dataset --csv videos.csv --out runs/mri_df --every 10 --size 256 --workers 2

Full run from a YAML config (``configs/build_*.yaml``), one shard of eight on a cluster::

    mrigan build-dataset --config configs/build_mri_df.yaml --shard 3/8
    mrigan build-dataset --config configs/build_mri_df.yaml --merge    # after all shards

Rerunning the same command resumes: finished videos are skipped. A rerun with settings that
change the output (``--size``, ``--every``, face thresholds, ...) is refused naming the keys;
``--restart`` rebuilds the folder from scratch. Errors (bad config values, unreadable CSV, an
output inside the inputs' folder, a second build writing the same folder) end in one line and
exit code 2 (caught once by ``mrigan.app.cli``).
"""

from __future__ import annotations

import argparse

from datasets_builders.mri_df import BuildConfig, BuildError, build_mri_df, merge_shards
from mrigan.config import (
    add_config_arguments,
    deep_merge,
    load_config,
    parse_overrides,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_build_arguments(parser, csv_form="path,label[,original,...]", out_default="runs/mri_df")
    parser.add_argument("--workers", type=int,
                        help="build this many videos at once in worker processes (default 1; "
                             "the output is the same whatever the count)")


def add_build_arguments(parser: argparse.ArgumentParser, *, csv_form: str,
                        out_default: str) -> None:
    """The flags both builders share (``build-dataset`` and ``build-faces``)."""
    add_config_arguments(parser)
    parser.add_argument("--csv", help=f"quick mode: a CSV listing {csv_form} "
                                      "(paths relative to the CSV)")
    parser.add_argument("--out", help=f"output folder (default: the config's out, {out_default})")
    parser.add_argument("--every", type=int, help="use every Nth frame (default 10)")
    parser.add_argument("--size", type=int, help="face crop size in pixels (default 256)")
    parser.add_argument("--max-frames", type=int, help="at most this many sampled frames per video")
    parser.add_argument("--shard", help="build only part k of n (k/n), e.g. for a job array")
    parser.add_argument("--merge", action="store_true",
                        help="join the finished shards into manifest.csv and stop")
    parser.add_argument("--restart", action="store_true",
                        help="remove an earlier build in --out first (needed after changing settings)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_flags(args: argparse.Namespace, faces: dict | None = None) -> dict:
    """The shared flags as a config mapping (``faces`` adds more ``faces.*`` keys)."""
    flags: dict = {}
    if args.csv:
        flags["sources"] = [{"kind": "csv", "root": args.csv}]
    for key in ("out", "every", "max_frames", "shard"):
        if getattr(args, key) is not None:
            flags[key] = getattr(args, key)
    faces = dict(faces or {})
    if args.size is not None:
        faces["size"] = args.size
    if faces:
        flags["faces"] = faces
    if args.no_progress:
        flags["progress"] = False
    return flags


def config_from_namespace(args: argparse.Namespace) -> BuildConfig:
    """The ``BuildConfig`` of the command line: defaults <- --config <- flags <- --set."""
    flags = build_flags(args)
    if getattr(args, "workers", None) is not None:
        flags["workers"] = args.workers
    overrides = deep_merge(flags, parse_overrides(args.overrides))
    return load_config(BuildConfig, args.config, overrides)


def exit_code(summary) -> int:
    """0 when rows were written or other shards are still to run (this one is done), else 1."""
    if summary.units_pending:
        return 0
    return 0 if summary.pairs_written else 1


def run(args: argparse.Namespace) -> int:
    cfg = config_from_namespace(args)
    if not cfg.sources:
        raise BuildError("give --csv FILE or a --config with sources")
    return exit_code(merge_shards(cfg) if args.merge else build_mri_df(cfg, restart=args.restart))
