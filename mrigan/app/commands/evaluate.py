"""``mrigan evaluate --checkpoint runs/x/checkpoints/best.pt``: the paper's table at video and
frame level (EER, AP, bootstrap 95% CIs), ROC and confusion PNGs, JSON/Markdown reports and
per-video predictions, for one or several test sets side by side."""

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


def run(args: argparse.Namespace) -> int:

    data = read_yaml(args.config) if args.config else {}
    for key, value in (("checkpoint", args.checkpoint), ("data_root", args.data),
                       ("out_dir", args.out)):
        if value:
            data[key] = value
    if args.rule:
        data.setdefault("aggregation", {})["rule"] = args.rule
    if args.test:
        data["test_sets"] = args.test
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
