"""``mrigan analyze INPUT... --generator G.safetensors [--detector D] --out DIR``.

Artifact maps and verdicts for suspicious videos and images; see :mod:`mrigan.app.analysis`.
Exit status: 0 when at least one input was analysed (others that could not be are listed in
the summary and the report), 1 when none could be, 2 for a bad request (e.g. ``--out`` inside an
input folder, a bad config value, weights holding NaN): one line from the CLI, before any work.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mrigan.app.analysis import AnalyzeConfig, AnalyzeError, Analyzer, validate_config
from mrigan.config import add_config_arguments, config_from_args
from mrigan.outputs import check_output_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT",
                        help="video files, images, or folders of them (searched recursively)")
    parser.add_argument("--generator", required=True, type=Path,
                        help="MRI-GAN generator weights (.safetensors from `mrigan export-generator`)")
    parser.add_argument("--detector", type=Path, default=None,
                        help="optional detector weights; without one, faces are scored by mean MRI")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: runs/<name>/); never inside an input folder")
    parser.add_argument("--every", type=int, default=None,
                        help="analyse every Nth frame (shortcut for --set frames.every=N)")
    parser.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:1 ...")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:

    shortcuts = []
    if args.every is not None:
        shortcuts.append(f"frames.every={args.every}")
    if args.device is not None:
        shortcuts.append(f"device={args.device}")
    args.overrides = [*shortcuts, *(args.overrides or [])]
    cfg = validate_config(config_from_args(AnalyzeConfig, args))  # before any work
    out = args.out or Path("runs") / cfg.name
    check_output_dir(out, args.inputs)  # before loading any model
    for path in (args.generator, args.detector):
        if path is not None and not path.is_file():
            raise AnalyzeError("no such weights file", path)
    analyzer = Analyzer(args.generator, args.detector, cfg)
    results = analyzer.run(args.inputs, out, progress=not args.no_progress,
                           on_input=_print_input)
    s = results.summary()
    skipped = ", ".join(f"{k} {v}" for k, v in s["skipped"].items()) or "none"
    verdicts = ", ".join(f"{v} {k}" for k, v in s["verdicts"].items()) or "none"
    print(f"{s['inputs']} input(s): {s['analysed']} analysed ({verdicts}), "
          f"not analysed: {skipped}; {s['faces']} faces")
    print(f"report: {Path(out) / 'report.html'}")
    print(f"results: {Path(out) / 'results.json'}")
    return 0 if s["analysed"] else 1


def _print_input(r) -> None:
    if r.analysed:
        v = r.verdict
        print(f"{r.path}: {v.label.upper()} ({v.explanation}; {r.faces} faces, "
              f"{len(r.tracks)} track(s))")
    else:
        print(f"{r.path}: not analysed, {r.status}: {r.reason}", file=sys.stderr)
