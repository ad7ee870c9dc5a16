"""``mrigan benchmark``: the MRI-GAN paper's protocol end to end, resumable stage by stage.

    mrigan benchmark --pairs ../shared/data/pairs/pairs.csv \
        --labelled ../shared/data/labelled_unpaired/labels.csv --preset cpu --out runs/bench

Stages (each a folder of ``--out`` with ``stage.json``): identity-grouped split -> MRI-DF of
the training identities -> MRI-GAN -> export -> plain and MRI detectors -> face sets ->
video-level evaluation (rule chosen on validation videos) -> GAN quality on held-out
identities -> ``report/benchmark.{json,md,html}`` + ROC figures. Rerunning the same command
skips finished stages and resumes an interrupted one; a changed setting is refused naming the
keys (``--restart`` redoes the stages whose settings changed).

``--folds K``: a grouped k-fold over the pairs' identity groups instead of the single split
(:mod:`mrigan.app.benchmark.folds`): ``report/folds.{md,json}`` pools the out-of-fold video
scores; ``--config configs/benchmark_folds_cpu.yaml`` is its CPU preset (plain detectors only).

``--preset cpu`` (``configs/benchmark_cpu.yaml``): sized for ~20 minutes on 2 CPU cores;
``--preset paper`` (``configs/benchmark_paper.yaml``): the paper's settings, for a GPU.
``--config FILE`` replaces the preset (a file may start with ``base: benchmark_cpu.yaml``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mrigan.app.benchmark.config import BenchmarkConfig
from mrigan.app.benchmark.folds import run_folds
from mrigan.app.benchmark.pipeline import run_benchmark
from mrigan.config import (
    PROJECT_ROOT,
    add_config_arguments,
    deep_merge,
    load_config,
    parse_overrides,
)
from mrigan.pretrained import is_pretrained_word

PRESETS = {"cpu": "configs/benchmark_cpu.yaml", "paper": "configs/benchmark_paper.yaml",
           "default_generator": "configs/benchmark_default_generator.yaml"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--pairs", help="CSV path,label,original[,identity,method] of paired "
                                        "real/fake videos (paths relative to the CSV)")
    parser.add_argument("--labelled", help="CSV path,label[,identity,...] of extra test videos "
                                           "without originals")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu",
                        help="settings preset when no --config is given (default: cpu)")
    parser.add_argument("--weights", help="local ImageNet weights of the detectors' backbone, "
                                          "or 'imagenet' for the packaged ones of mobilenet_v2 / "
                                          "efficientnet-lite0 (both detectors; same as --set "
                                          "detector.set.model.weights=FILE)")
    parser.add_argument("--out", required=True, help="output folder (resumable)")
    parser.add_argument("--folds", type=int, metavar="K",
                        help="grouped k-fold over the identity groups: each fold holds some "
                             "groups out as test, the report pools the out-of-fold video scores "
                             "(same as --set folds=K; default: the single split)")
    parser.add_argument("--restart", action="store_true",
                        help="redo the stages whose settings changed (removes their folders)")


def run(args: argparse.Namespace) -> int:
    overrides = parse_overrides(args.overrides)
    if args.pairs:
        overrides["pairs"] = str(Path(args.pairs).resolve())
    if args.labelled:
        overrides["labelled"] = str(Path(args.labelled).resolve())
    if args.weights:  # "imagenet": the packaged weights (mrigan.pretrained), else a local file
        weights = (args.weights if is_pretrained_word(args.weights)
                   else str(Path(args.weights).resolve()))
        overrides = deep_merge(overrides, {"detector": {"set": {"model": {"weights": weights}}}})
    if args.folds is not None:
        overrides["folds"] = args.folds
    config = args.config or str(PROJECT_ROOT / PRESETS[args.preset])
    cfg = load_config(BenchmarkConfig, config, overrides)
    if cfg.folds:
        summary = run_folds(cfg, args.out, restart=args.restart)
        print(f"benchmark: {summary['out']}/folds.md")
        for r in summary["table"]:
            ci = r["ci95"]["auc"]
            print(f"  {r['test_set']:>9} {r['detector']:>8} (pooled, {cfg.folds} folds): "
                  f"videos {r['n']}  AUC {r['auc']:.3f}"
                  + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")
                  + f"  AP {r['ap']:.3f}  EER {r['eer']:.3f}  acc {r['accuracy']:.3f}")
        return 0
    summary = run_benchmark(cfg, args.out, restart=args.restart)
    print(f"benchmark: {summary['out']}/benchmark.md")
    for r in summary["table"]:
        print(f"  {r['test_set']:>9} {r['detector']:>5}: videos {r['videos']}  "
              f"acc {r['accuracy']:.3f}  AUC {r['auc']:.3f}  F1 {r['f1']:.3f}  "
              f"EER {r['eer']:.3f}  AP {r['ap']:.3f}")
    q = summary["gan_quality"]
    print(f"  GAN held-out mean SSIM: fakes {q['fake']['mean_ssim']:.3f} (all-black "
          f"{q['fake']['mean_ssim_black']:.3f}), reals {q['real']['mean_ssim']:.3f} "
          f"(all-black {q['real']['mean_ssim_black']:.3f})")
    return 0
