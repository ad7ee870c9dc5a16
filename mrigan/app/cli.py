"""The ``mrigan`` command line. Each subcommand lives in the module that does its job.

A subcommand module exposes ``add_arguments(parser)`` and ``run(args) -> int``; it is imported
only when that subcommand runs, so ``mrigan --help`` stays fast and one broken optional
component does not break the others. A :class:`mrigan.errors.MriganError` raised by any
subcommand is caught here, once: one line on stderr naming the file and the problem, exit 2.
Logging is set up here too (:mod:`mrigan.app.logs`): progress lines on stdout, warnings on
stderr; ``-v`` adds debug records, ``-q`` hides progress (before or after the subcommand:
``mrigan -q build-dataset ...`` or ``mrigan build-dataset -q ...``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import threading

from mrigan import __version__
from mrigan.app.logs import console_logging, level_for
from mrigan.errors import MriganError

#: subcommand -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "mri": ("mrigan.app.commands.mri", "compute MRI (1 - SSIM) maps of real/fake image pairs"),
    "build-dataset": ("mrigan.app.commands.build_dataset", "build the MRI-DF dataset from videos"),
    "build-faces": ("mrigan.app.commands.build_faces", "build a labelled face set (no originals needed)"),
    "train-gan": ("mrigan.app.commands.train_gan", "train the MRI-GAN generator"),
    "export-generator": ("mrigan.app.commands.export", "export a GAN checkpoint as .safetensors"),
    "export-onnx": ("mrigan.app.commands.export_onnx",
                    "a generator or detector as ONNX (onnxruntime, TensorRT, OpenVINO)"),
    "train-detector": ("mrigan.app.commands.train_detector", "train a plain or MRI frame detector"),
    "evaluate": ("mrigan.app.commands.evaluate", "evaluate a detector at frame and video level"),
    "train-realism": ("mrigan.app.commands.train_realism", "train a realism (MOS) regressor"),
    "evaluate-realism": ("mrigan.app.commands.evaluate_realism", "evaluate a realism regressor"),
    "analyze": ("mrigan.app.commands.analyze", "artifact maps and verdicts for videos/images"),
    "benchmark": ("mrigan.app.commands.benchmark",
                  "the paper's protocol end to end: split, MRI-DF, GAN, detectors, table"),
    "ship-generator": ("mrigan.app.commands.ship_generator",
                       "a benchmark run's generator as the package's default (fp16 + model card)"),
    "demo": ("mrigan.app.commands.demo", "end-to-end demo on embedded data"),
    "serve": ("mrigan.app.commands.serve",
              "a local web page: drop a video, read its artifact maps (mrigan[serve])"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mrigan", description=__doc__.splitlines()[0])

    parser.add_argument("--version", action="version", version=f"mrigan {__version__}")
    add_verbosity_arguments(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, help_text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def add_verbosity_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="also show debug records")
    parser.add_argument("-q", "--quiet", action="count", default=0,
                        help="hide progress lines (-qq: warnings too)")


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    argv = list(sys.argv[1:] if argv is None else argv)
    leading = {"-v": 0, "-q": 0}
    while argv and argv[0] in ("-v", "--verbose", "-q", "--quiet", "-vv", "-qq"):
        flag = argv.pop(0).lstrip("-")
        leading["-" + flag[0]] += len(flag) if flag in ("v", "q", "vv", "qq") else 1
    if not argv or argv[0] not in SUBCOMMANDS:
        parser = build_parser()
        if not argv:
            parser.print_help()
            return 2
        parser.parse_args(argv)  # prints the usage error or --help/--version
        return 2
    name, rest = argv[0], argv[1:]
    module_name, help_text = SUBCOMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            print(f"mrigan {name}: not available in this version ({module_name} missing)",
                  file=sys.stderr)
            return 2
        raise
    parser = argparse.ArgumentParser(prog=f"mrigan {name}", description=help_text)
    add_verbosity_arguments(parser)
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    level = level_for(args.verbose + leading["-v"], args.quiet + leading["-q"])
    with _sigterm_interrupts(), console_logging(level):
        try:
            return int(module.run(args) or 0)
        except MriganError as exc:  # the one place user errors are caught: one line, exit 2
            print(f"mrigan {name}: error: {exc.one_line()}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: work finished so far is kept
            signame = getattr(exc, "signal_name", "SIGINT")
            print(f"mrigan {name}: interrupted ({signame}): what was finished is kept and the "
                  "output is marked incomplete (INCOMPLETE.json / results.json); rerun to "
                  "resume or replace it", file=sys.stderr)
            return 130
        except OSError as exc:  # the machine's side: a full disk, a read-only folder
            if exc.errno is None:
                raise  # not a file-system error: a bug, keep its traceback
            print(f"mrigan {name}: error: {' '.join(str(exc).split())} (what was finished "
                  "is kept; an unfinished output is marked incomplete)", file=sys.stderr)
            return 2


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is (as Ctrl-C's KeyboardInterrupt), so a batch is
    cut short the same way: its output marked incomplete, one line, exit 130."""

    signal_name = "SIGTERM"


@contextlib.contextmanager
def _sigterm_interrupts():
    """While a subcommand runs in the main thread, SIGTERM raises :class:`Terminated`."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_terminated(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
