"""``mrigan train-detector --config configs/detector_plain.yaml``: train a frame (or temporal)
detector on plain faces or MRIs; outputs in ``runs/<name>/``."""

from __future__ import annotations

import argparse

from detectors.config import DetectorConfig
from detectors.repeats import add_repeat_arguments, repeat_detector
from detectors.train import train_detector
from mrigan import distributed
from mrigan.config import add_config_arguments, config_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, default_config="configs/detector_plain.yaml")
    parser.add_argument("--data", help="MRI-DF root (same as --set data.root=...)")
    parser.add_argument("--input", choices=["plain", "mri"], help="same as --set input.name=...")
    parser.add_argument("--name", help="run name: outputs go to <out_dir>/<name>/")
    parser.add_argument("--out-dir", help="parent folder of runs (default: runs)")
    add_repeat_arguments(parser)


def run(args: argparse.Namespace) -> int:

    extra = [f"{key}={value}" for key, value in (("data.root", args.data),
                                                 ("input.name", args.input),
                                                 ("name", args.name),
                                                 ("out_dir", args.out_dir)) if value]
    args.overrides = list(args.overrides) + extra
    cfg = config_from_args(DetectorConfig, args)
    if args.repeats:  # <out_dir>/<name>/run<k>/ + repeats.md (the Xception/LSTM study's protocol)
        repeat_detector(cfg, args.repeats)
        return 0
    with distributed.session() as dist_info:  # torchrun: one process per device
        result = train_detector(cfg)
    if dist_info.is_main:
        print(f"best validation AUC {result.best_auc:.4f} at epoch {result.best_epoch}; "
              f"{result.steps} steps; checkpoints: {result.best} {result.last}")
    return 0
