"""``mrigan analyze INPUT... [--generator G.safetensors] [--detector D] --out DIR``.

Artifact maps and verdicts for suspicious videos and images; see :mod:`mrigan.app.analysis`.
Without ``--generator`` the package's default generator is used
(``mrigan/weights/default_generator.safetensors``, made by ``mrigan ship-generator``; its model
card gives the verdict threshold and its limits, and when the card says it cannot tell real
from fake on held-out videos every verdict line carries that warning).
Exit status: 0 when at least one input was analysed (others that could not be are listed in
the summary and the report), 1 when none could be, 2 for a bad request (e.g. ``--out`` inside an
input folder, a bad config value, weights holding NaN): one line from the CLI, before any work.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mrigan.app.analysis import AnalyzeConfig, Analyzer, resolve_weights, validate_config
from mrigan.app.analysis.outputs import check_earlier_run
from mrigan.config import add_config_arguments, config_from_args
from mrigan.fileio import printable
from mrigan.model_card import DEFAULT_GENERATOR
from mrigan.outputs import check_output_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT",
                        help="video files, images, or folders of them (searched recursively)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: runs/<name>/); never inside an input folder")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--replace", action="store_true",
                        help="remove an earlier analysis in --out first (without it such a "
                             "folder is refused)")
    add_analysis_arguments(parser)


def add_analysis_arguments(parser: argparse.ArgumentParser) -> None:
    """The analysis' own settings, the same in ``analyze`` and ``serve``: the models,
    ``--every``, ``--device`` and the shared ``--config`` / ``--set`` (read by
    :func:`analysis_config`)."""
    parser.add_argument("--generator", type=Path, default=None,
                        help="MRI-GAN generator weights (.safetensors from `mrigan "
                             "export-generator`; default: the shipped default generator, "
                             f"{DEFAULT_GENERATOR})")
    parser.add_argument("--detector", type=Path, default=None,
                        help="optional detector weights; without one, faces are scored by mean MRI")
    parser.add_argument("--every", type=int, default=None,
                        help="analyse every Nth frame (shortcut for --set frames.every=N)")
    parser.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:1 ...")
    add_config_arguments(parser)


def analysis_config(args: argparse.Namespace) -> AnalyzeConfig:
    """The checked :class:`AnalyzeConfig` of :func:`add_analysis_arguments`' flags (``--every``
    and ``--device`` are shortcuts for ``--set``, which wins)."""
    shortcuts = []
    if args.every is not None:
        shortcuts.append(f"frames.every={args.every}")
    if args.device is not None:
        shortcuts.append(f"device={args.device}")
    args.overrides = [*shortcuts, *(args.overrides or [])]
    return validate_config(config_from_args(AnalyzeConfig, args))


def run(args: argparse.Namespace) -> int:
    cfg = analysis_config(args)  # before any work
    out = args.out or Path("runs") / cfg.name
    # before loading any model: an output inside the inputs, an earlier analysis there
    resolved = check_output_dir(out, args.inputs)
    if not args.replace:
        check_earlier_run(resolved, replace=False)
    generator, detector = resolve_weights(args.generator, args.detector)
    if args.generator is None:
        print(f"no --generator given: using the default generator {generator}")
    analyzer = Analyzer(generator, detector, cfg)
    for line in setup_lines(analyzer):
        print(line)
    card = analyzer.generator_info.get("card")
    warning = (card or {}).get("warning", "")
    results = analyzer.run(args.inputs, out, progress=not args.no_progress,
                           on_input=lambda r: _print_input(r, warning), replace=args.replace)
    s = results.summary()
    skipped = ", ".join(f"{k} {v}" for k, v in s["skipped"].items()) or "none"
    verdicts = ", ".join(f"{v} {k}" for k, v in s["verdicts"].items()) or "none"
    print(f"{s['inputs']} input(s): {s['analysed']} analysed ({verdicts}), "
          f"not analysed: {skipped}; {s['faces']} faces")
    print(printable(f"report: {Path(out) / 'report.html'}"))
    print(printable(f"results: {Path(out) / 'results.json'}"))
    return 0 if s["analysed"] else 1


def setup_lines(analyzer: Analyzer) -> list[str]:
    """What an analysis will judge with: the generator's model card and the verdict rule."""
    card = analyzer.generator_info.get("card")
    if not card:
        return []
    v = analyzer.config.verdict
    return [f"generator card: {card['summary']}",
            f"verdict: {v.rule} rule, mean-MRI face threshold {v.mri_threshold:g}, fraction "
            f"{v.fake_fraction:g} (from {analyzer.generator_info['verdict_from']})"]


def _print_input(r, warning: str = "") -> None:
    if r.analysed:
        v = r.verdict
        print(f"{printable(r.path)}: {v.label.upper()} ({v.explanation}; {r.faces} faces, "
              f"{len(r.tracks)} track(s))" + (f" - WARNING: {warning}" if warning else ""))
    else:
        print(printable(f"{r.path}: not analysed, {r.status}: {r.reason}"), file=sys.stderr)
