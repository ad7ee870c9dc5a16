"""``mrigan train-realism``: fine-tune a realism (MOS) regressor and write its test report.

Writes ``<out>/config.yaml`` (resolved), ``checkpoints/{last,best}.pt``, ``tb/`` and
``reports/`` (report.json, predictions.csv, scatter PNGs) with the fine-tuned model, the
frozen-feature baseline and, when ``ensemble.checkpoints`` are given, the weighted ensemble.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from detectors.realism.config import RealismConfig
from detectors.realism.data import RealismDataError, prepare_data
from detectors.realism.dataset import check_inputs, needs_mri
from detectors.realism.evaluate import evaluate_run
from detectors.realism.labels import LabelError
from detectors.realism.repeats import repeat_realism
from detectors.realism.splits import SplitError
from detectors.realism.train import load_regressor, train_regressor
from detectors.repeats import add_repeat_arguments
from mrigan.checkpoint import CheckpointError
from mrigan.config import ConfigError, add_config_arguments, config_from_args, save_config
from mrigan.device import resolve_device


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, default_config="configs/realism.yaml")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: <out_dir>/<name> from the config)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the frozen-feature baseline")
    add_repeat_arguments(parser, protocols=("splits", "seeds"), default="splits")


def load_members(paths, device) -> list:
    """Ensemble members ``(name, model, cfg)`` from checkpoint files."""
    members = []
    for i, path in enumerate(paths):
        model, cfg = load_regressor(path, device)
        members.append((f"member{i + 1}_{cfg.model.inputs}", model, cfg))
    return members


USER_ERRORS = (RealismDataError, LabelError, SplitError, ConfigError, CheckpointError,
               FileNotFoundError, ValueError, FloatingPointError)


def run(args: argparse.Namespace) -> int:
    """Bad configs, labels or data end with one clear line on stderr and exit code 2."""
    try:
        return _run(args)
    except USER_ERRORS as exc:
        print(f"mrigan train-realism: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    cfg = config_from_args(RealismConfig, args)
    check_inputs(cfg.model.inputs)  # fail before any data is read
    out = Path(args.out) if args.out else Path(cfg.out_dir) / cfg.name
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    device = resolve_device(cfg.train.device)
    members = load_members(cfg.ensemble.checkpoints, device)
    need_mri = needs_mri(cfg.model.inputs) or any(needs_mri(m[2].model.inputs) for m in members)
    data = prepare_data(cfg.data, need_mri=need_mri)
    s = data.split
    print(f"{len(data.clips)} rated videos ({len(data.missing)} without frames skipped); "
          f"train {len(s.train)}, val {len(s.val)}, "
          + ", ".join(f"test {k} {len(v)}" for k, v in s.tests.items()))
    if args.repeats:  # <out>/run<k>/ + repeats.md (DREAM: a new split per run; or seeds only)
        repeat_realism(cfg, data, out, device, args.repeats, protocol=args.repeat_protocol,
                       baseline=not args.no_baseline, members=members)
        return 0
    result = train_regressor(cfg, data.train, data.val, out)
    print(f"best epoch {result.best_epoch}: {result.best_path}")
    evaluate_run(cfg, result.model, data, out / "reports", device, baseline=not args.no_baseline,
                 members=members, weights=cfg.ensemble.weights,
                 extra={"checkpoint": str(result.best_path), "best_epoch": result.best_epoch,
                        "history": result.history})
    return 0
