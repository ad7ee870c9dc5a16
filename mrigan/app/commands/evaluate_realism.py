"""``mrigan evaluate-realism --checkpoint best.pt``: test a trained realism regressor.

The run's own config (stored in the checkpoint) is the starting point; ``--config`` and
``--set`` change it, e.g. ``--set data.labels=[other.csv] --set data.split=none`` to test on
another data set as a whole (one test set ``all``). ``--ensemble B.pt --weights 0.75 0.25``
averages this model with others. Writes report.json, predictions.csv and scatter PNGs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from detectors.realism.config import RealismConfig
from detectors.realism.data import prepare_data
from detectors.realism.dataset import needs_mri
from detectors.realism.evaluate import evaluate_run
from detectors.realism.train import load_regressor
from mrigan.app.commands.train_realism import check_realism_config, load_members
from mrigan.config import (
    ConfigError,
    add_config_arguments,
    deep_merge,
    from_dict,
    parse_overrides,
    read_yaml,
    require_path,
    save_config,
    to_dict,
)
from mrigan.device import resolve_device


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, required=True, help="a realism best.pt / last.pt")
    add_config_arguments(parser)
    parser.add_argument("--out", type=Path, default=None,
                        help="report folder (default: <checkpoint's run>/reports_eval)")
    parser.add_argument("--ensemble", type=Path, nargs="+", default=[],
                        help="other realism checkpoints to average with this one")
    parser.add_argument("--weights", type=float, nargs="+", default=[],
                        help="ensemble weights, this checkpoint first (default: equal)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the frozen-feature baseline")
    parser.add_argument("--device", default=None, help="override train.device (auto, cpu, cuda)")


def run(args: argparse.Namespace) -> int:
    """Bad configs, labels or data end with one clear line on stderr and exit code 2
    (:class:`mrigan.errors.MriganError`, caught by ``mrigan.app.cli``)."""
    device_spec = args.device
    model, trained_cfg = load_regressor(args.checkpoint, "cpu")
    data_dict = to_dict(trained_cfg)
    if args.config:
        data_dict = deep_merge(data_dict, read_yaml(args.config))
    data_dict = deep_merge(data_dict, parse_overrides(args.overrides))
    cfg = from_dict(RealismConfig, data_dict, where=str(args.config or args.checkpoint))
    if cfg.model != trained_cfg.model:
        raise ConfigError("the model section cannot change after training (trained with "
                          f"{trained_cfg.model})", args.checkpoint)
    if len(args.weights) not in (0, 1 + len(args.ensemble)):
        raise ConfigError(f"--weights gives {len(args.weights)} weight(s) for "
                          f"{1 + len(args.ensemble)} model(s) (this checkpoint + --ensemble)")
    device = resolve_device(device_spec or cfg.train.device)
    out = args.out or args.checkpoint.resolve().parent.parent / "reports_eval"
    check_realism_config(cfg, out, str(args.config or args.checkpoint), training=False)
    for path in args.ensemble:
        require_path(path, "--ensemble", where="command line")
    model = model.to(device)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    members = load_members(args.ensemble, device)
    need_mri = needs_mri(cfg.model.inputs) or any(needs_mri(m[2].model.inputs) for m in members)
    data = prepare_data(cfg.data, need_mri=need_mri)
    evaluate_run(cfg, model, data, out, device, baseline=not args.no_baseline, members=members,
                 weights=args.weights or cfg.ensemble.weights,
                 extra={"checkpoint": str(args.checkpoint)})
    return 0
