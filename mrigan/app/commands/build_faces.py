"""``mrigan build-faces``: a labelled face set (videos without originals; resumable, shardable).

Quick run on a CSV listing (``path,label[,identity,split,...]``, paths relative to it)::

    mrigan build-faces --csv labels.csv --out runs/faces --every 10 --size 256

Dataset layouts (DFDC ``metadata.json`` folders, FF++ with its split lists, Celeb-DF-v2, image
folders) from a YAML config (``configs/face_set.yaml``), in shards if need be::

    mrigan build-faces --config configs/face_set.yaml --shard 2/4
    mrigan build-faces --config configs/face_set.yaml --merge    # after all shards

Rerunning the same command resumes; other settings are refused naming the keys (``--restart``
rebuilds). Errors end in one line and exit code 2 (caught once by ``mrigan.app.cli``).
"""

from __future__ import annotations

import argparse

from datasets_builders.build_config import BuildError
from datasets_builders.build_faces import BuildFaceSetConfig, build_face_set, merge_face_shards
from mrigan.config import add_config_arguments, deep_merge, load_config, parse_overrides


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--csv", help="quick mode: a CSV listing path,label[,identity,split,...] "
                                      "(paths relative to the CSV)")
    parser.add_argument("--out", help="output folder (default: the config's out, runs/faces)")
    parser.add_argument("--every", type=int, help="use every Nth frame (default 10)")
    parser.add_argument("--size", type=int, help="face crop size in pixels (default 256)")
    parser.add_argument("--max-frames", type=int, help="at most this many sampled frames per video")
    parser.add_argument("--max-faces", type=int, help="at most this many faces per video (default 32)")
    parser.add_argument("--drop-multi-face", action="store_true",
                        help="skip videos where over 10%% of sampled frames hold two or more faces "
                             "(thesis rule; the fraction is faces.multi_face_fraction)")
    parser.add_argument("--shard", help="build only part k of n (k/n), e.g. for a job array")
    parser.add_argument("--merge", action="store_true",
                        help="join the finished shards into manifest.csv and stop")
    parser.add_argument("--restart", action="store_true",
                        help="remove an earlier build in --out first (needed after changing settings)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def config_from_namespace(args: argparse.Namespace) -> BuildFaceSetConfig:
    """The ``BuildFaceSetConfig`` of the command line: defaults <- --config <- flags <- --set."""
    flags: dict = {}
    if args.csv:
        flags["sources"] = [{"kind": "csv", "root": args.csv}]
    for key in ("out", "every", "max_frames", "max_faces", "shard"):
        if getattr(args, key) is not None:
            flags[key] = getattr(args, key)
    faces = {}
    if args.size is not None:
        faces["size"] = args.size
    if args.drop_multi_face:
        faces["drop_multi_face"] = True
    if faces:
        flags["faces"] = faces
    if args.no_progress:
        flags["progress"] = False
    overrides = deep_merge(flags, parse_overrides(args.overrides))
    return load_config(BuildFaceSetConfig, args.config, overrides)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_namespace(args)
    if not cfg.sources:
        raise BuildError("give --csv FILE or a --config with sources")
    summary = merge_face_shards(cfg) if args.merge else build_face_set(cfg, restart=args.restart)
    if summary.units_pending:
        return 0  # this shard is done; the others are still to run
    return 0 if summary.pairs_written else 1
