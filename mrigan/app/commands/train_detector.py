"""``mrigan train-detector --config configs/detector_plain.yaml``: train a frame (or temporal)
detector on plain faces or MRIs; outputs in ``runs/<name>/``.

Checked before any work: the config, the data root and its manifest, the device, local
weights and the generator named by the config, and that the run folder is not inside the data.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from detectors.backbones import BACKBONES, check_backbone_weights
from detectors.config import DetectorConfig
from detectors.repeats import repeat_detector
from detectors.train import train_detector
from mrigan import distributed
from mrigan.config import add_config_arguments, config_from_args, require_path
from mrigan.device import resolve_device
from mrigan.outputs import check_output_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, default_config="configs/detector_plain.yaml")
    parser.add_argument("--data", help="MRI-DF root (same as --set data.root=...)")
    parser.add_argument("--input", choices=["plain", "mri"], help="same as --set input.name=...")
    parser.add_argument("--name", help="run name: outputs go to <out_dir>/<name>/")
    parser.add_argument("--out-dir", help="parent folder of runs (default: runs)")
    add_repeat_arguments(parser)


def add_repeat_arguments(parser: argparse.ArgumentParser, protocols: Sequence[str] = ("seeds",),
                         default: str = "seeds") -> None:
    """``--repeats N`` (and ``--repeat-protocol`` when more than one protocol applies)."""
    parser.add_argument("--repeats", type=_positive, default=0, metavar="N",
                        help="run the experiment N times (run k seeded seed+k) under <out>/run<k>/ "
                             "and write one summary table (repeats.md / repeats.json); a killed "
                             "series resumes at its unfinished run")
    if len(protocols) > 1:
        parser.add_argument("--repeat-protocol", choices=list(protocols), default=default,
                            help="seeds: same split, new seed per run (the Xception/LSTM study); "
                                 "splits: also a new random split per run (DREAM). Default: "
                                 f"{default}")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"--repeats must be >= 1, got {value}")
    return value


def check_detector_config(cfg: DetectorConfig, where: str) -> None:
    """Up-front validation of a detector run (see the module docstring)."""
    root = require_path(cfg.data.root, "data.root", kind="dir", where=where,
                        hint="an MRI-DF folder from `mrigan build-dataset` (or --data)")
    require_path(root / "manifest.csv", "data.root", where=where,
                 hint="the MRI-DF folder must hold manifest.csv")
    resolve_device(cfg.train.device)
    if not cfg.model.backbone.startswith("timm:"):
        BACKBONES.get(cfg.model.backbone)  # an unknown name lists the known ones
    check_backbone_weights(cfg.model.backbone, cfg.model.weights, where)
    if cfg.input.name == "mri" and cfg.input.generator:
        require_path(cfg.input.generator, "input.generator", where=where,
                     hint="a `mrigan export-generator` .safetensors")
    check_output_dir(Path(cfg.out_dir) / cfg.name, [root])


def run(args: argparse.Namespace) -> int:

    extra = [f"{key}={value}" for key, value in (("data.root", args.data),
                                                 ("input.name", args.input),
                                                 ("name", args.name),
                                                 ("out_dir", args.out_dir)) if value]
    args.overrides = list(args.overrides) + extra
    cfg = config_from_args(DetectorConfig, args)
    check_detector_config(cfg, args.config or "DetectorConfig")
    with distributed.session() as dist_info:  # torchrun: one process per device
        if args.repeats:  # <out_dir>/<name>/run<k>/ + repeats.md (the Xception/LSTM study's)
            repeat_detector(cfg, args.repeats)
            return 0
        result = train_detector(cfg)
    if dist_info.is_main:
        best = result.best_value if result.best_value is not None else float("nan")
        print(f"best validation AUC {best:.4f} at epoch {result.best_epoch}; "
              f"{result.step} steps; checkpoints: {result.best_checkpoint} "
              f"{result.last_checkpoint}")
    return 0
