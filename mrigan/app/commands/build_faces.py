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
from mrigan.app.commands.build_dataset import add_build_arguments, build_flags, exit_code
from mrigan.config import deep_merge, load_config, parse_overrides


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_build_arguments(parser, csv_form="path,label[,identity,split,...]",
                        out_default="runs/faces")
    parser.add_argument("--max-faces", type=int, help="at most this many faces per video (default 32)")
    parser.add_argument("--drop-multi-face", action="store_true",
                        help="skip videos where over 10%% of sampled frames hold two or more faces "
                             "(thesis rule; the fraction is faces.multi_face_fraction)")


def config_from_namespace(args: argparse.Namespace) -> BuildFaceSetConfig:
    """The ``BuildFaceSetConfig`` of the command line: defaults <- --config <- flags <- --set."""
    flags = build_flags(args, {"drop_multi_face": True} if args.drop_multi_face else None)
    if args.max_faces is not None:
        flags["max_faces"] = args.max_faces
    overrides = deep_merge(flags, parse_overrides(args.overrides))
    return load_config(BuildFaceSetConfig, args.config, overrides)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_namespace(args)
    if not cfg.sources:
        raise BuildError("give --csv FILE or a --config with sources")
    return exit_code(merge_face_shards(cfg) if args.merge
                     else build_face_set(cfg, restart=args.restart))
