"""``mrigan train-realism``: fine-tune a realism (MOS) regressor and write its test report.

Writes ``<out>/config.yaml`` (resolved), ``checkpoints/{last,best}.pt``, ``tb/`` and
``reports/`` (report.json, predictions.csv, scatter PNGs) with the fine-tuned model, the
frozen-feature baseline and, when ``ensemble.checkpoints`` are given, the weighted ensemble.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from detectors.backbones import check_backbone_weights
from detectors.realism.baseline import REGRESSORS
from detectors.realism.config import RealismConfig
from detectors.realism.data import prepare_data
from detectors.realism.dataset import check_inputs, needs_mri
from detectors.realism.losses import build_loss
from detectors.realism.model import FUSIONS
from detectors.realism.model_registry import REALISM_MODELS, model_kind
from detectors.realism.repeats import repeat_realism, train_and_evaluate
from detectors.realism.train import load_regressor
from mrigan.app.commands.train_detector import add_repeat_arguments
from mrigan.config import (
    ConfigError,
    add_config_arguments,
    config_from_args,
    require_path,
    save_config,
)
from mrigan.device import resolve_device
from mrigan.outputs import check_output_dir


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


def check_realism_config(cfg: RealismConfig, out: Path, where: str, training: bool = True) -> None:
    """Up-front validation: names (model, inputs, fusion, loss, baseline, selection), label
    files, device, ensemble members, the model's own checks (da-clip: open_clip installed,
    architecture, descriptions CSV when ``training``), output folder (not a file, not inside
    the data)."""
    check_inputs(cfg.model.inputs)
    names = {"model.name": (cfg.model.name, REALISM_MODELS.names()),
             "model.fusion": (cfg.model.fusion, FUSIONS),
             "baseline.regressor": (cfg.baseline.regressor, REGRESSORS),
             "train.select_by": (cfg.train.select_by, ("score", "srcc", "plcc", "rmse", "mae"))}
    for key, (value, known) in names.items():
        if value not in known:
            raise ConfigError(f"{where}: {key} {value!r} is not one of {list(known)}")
    try:
        build_loss(cfg.train.loss)
    except (ValueError, KeyError) as exc:  # KeyError: an unknown loss name
        raise ConfigError(f"{where}: train.loss: {exc}") from exc
    for i, labels in enumerate(cfg.data.labels):
        if not Path(labels).is_file():
            raise ConfigError(f"MOS label file not found (data.labels[{i}] in {where})", labels)
    resolve_device(cfg.train.device)
    for i, ckpt in enumerate(cfg.ensemble.checkpoints):
        require_path(ckpt, f"ensemble.checkpoints[{i}]", where=where)
    check_backbone_weights(cfg.model.backbone, cfg.model.weights, where)
    model_kind(cfg.model.name).check(cfg, where, training)
    data_dirs = [d for d in (cfg.data.clips, cfg.data.videos) if d and Path(d).is_dir()]
    check_output_dir(out, data_dirs)


def run(args: argparse.Namespace) -> int:
    """Bad configs, labels or data end with one clear line on stderr and exit code 2
    (:class:`mrigan.errors.MriganError`, caught by ``mrigan.app.cli``)."""
    cfg = config_from_args(RealismConfig, args)
    out = Path(args.out) if args.out else Path(cfg.out_dir) / cfg.name
    check_realism_config(cfg, out, args.config or "RealismConfig")  # before any data is read
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
    train_and_evaluate(cfg, data, out, device, baseline=not args.no_baseline, members=members)
    return 0
