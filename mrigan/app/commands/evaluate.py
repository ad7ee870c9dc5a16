"""``mrigan evaluate --checkpoint runs/x/checkpoints/best.pt``: the paper's table at video and
frame level (EER, AP, bootstrap 95% CIs), ROC and confusion PNGs, JSON/Markdown reports and
per-video predictions, for one or several test sets side by side.

Face sets (labelled faces without MRIs, e.g. from videos that have no originals)::

    mrigan evaluate --checkpoint best.pt --validation-set faces_val --test-set dfdc=faces_test
    mrigan evaluate --checkpoint best.pt --validation-set faces@val --test-set test=faces@test \
        --generator mri_generator.safetensors     # MRI detector: MRIs cached in <out>/mri_cache
"""

from __future__ import annotations

import argparse

from detectors.config import EvaluateConfig
from detectors.evaluate import evaluate_detector
from mrigan.config import (
    add_config_arguments,
    deep_merge,
    from_dict,
    parse_overrides,
    read_yaml,
    require_path,
)
from mrigan.device import resolve_device
from mrigan.outputs import check_output_dir


def _test_set(text: str) -> dict:
    """``NAME=SPLIT`` or ``NAME=SPLIT:METHOD,METHOD`` (fakes of those methods + all reals)."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--test {text!r}: use NAME=SPLIT[:METHOD,...]")
    name, rest = text.split("=", 1)
    split, _, methods = rest.partition(":")
    return {"name": name, "split": split, "methods": [m for m in methods.split(",") if m]}


def _folder_set(text: str, name: str | None = None) -> dict:
    """``DIR`` (every row) or ``DIR@SPLIT`` (rows of that split)."""
    root, _, split = text.partition("@")
    return {"name": name or "validation", "root": root, "split": split}


def _named_folder_set(text: str) -> dict:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--test-set {text!r}: use NAME=DIR[@SPLIT]")
    name, rest = text.split("=", 1)
    return _folder_set(rest, name)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--checkpoint", help="train-detector checkpoint (best.pt)")
    parser.add_argument("--data", help="MRI-DF root (default: the one the detector trained on)")
    parser.add_argument("--out", help="output folder (default: <run>/reports/<name>)")
    parser.add_argument("--rule", choices=["count", "mean", "confident"],
                        help="video rule (same as --set aggregation.rule=...)")
    parser.add_argument("--test", action="append", type=_test_set, default=[],
                        metavar="NAME=SPLIT[:METHODS]",
                        help="a test set; repeat for several side by side, e.g. "
                             "--test test=test --test nt_only=test:NeuralTextures")
    parser.add_argument("--validation-set", type=_folder_set, metavar="DIR[@SPLIT]",
                        help="validation faces (the video rule is chosen on these only): an "
                             "MRI-DF or face-set folder, all rows or those of SPLIT")
    parser.add_argument("--test-set", action="append", type=_named_folder_set, default=[],
                        metavar="NAME=DIR[@SPLIT]",
                        help="a test face set from a folder; repeatable, combines with --test")
    parser.add_argument("--generator",
                        help="MRI-GAN generator (.safetensors): score MRIs of the faces made by "
                             "it (cached in <out>/mri_cache by content hash)")


def run(args: argparse.Namespace) -> int:

    data = read_yaml(args.config) if args.config else {}
    for key, value in (("checkpoint", args.checkpoint), ("data_root", args.data),
                       ("out_dir", args.out)):
        if value:
            data[key] = value
    if args.rule:
        data.setdefault("aggregation", {})["rule"] = args.rule
    if args.test or args.test_set:
        data["test_sets"] = args.test + args.test_set
    if args.validation_set:
        data["validation"] = args.validation_set
    if args.generator:
        data.setdefault("input", {}).update(name="mri", generator=args.generator)
    where = args.config or "command line"
    cfg = from_dict(EvaluateConfig, deep_merge(data, parse_overrides(args.overrides)), where=where)
    require_path(cfg.checkpoint, "checkpoint", where=where,
                 hint="a train-detector best.pt, e.g. --checkpoint runs/x/checkpoints/best.pt")
    if cfg.data_root:
        root = require_path(cfg.data_root, "data_root", kind="dir", where=where)
        require_path(root / "manifest.csv", "data_root", where=where)
    resolve_device(cfg.device)
    if cfg.out_dir:
        check_output_dir(cfg.out_dir, [cfg.data_root] if cfg.data_root else [])
    results = evaluate_detector(cfg)
    for name, res in results["test_sets"].items():
        v, f = res["video"], res["frame"]
        print(f"{name}: video AUC {v['auc']:.3f} acc {v['accuracy']:.3f} "
              f"(TPR {v['tpr']:.3f}, TNR {v['tnr']:.3f}); frame AUC {f['auc']:.3f} "
              f"EER {f['eer']:.3f} AP {f['ap']:.3f}")
    return 0
