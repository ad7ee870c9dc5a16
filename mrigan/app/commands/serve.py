"""``mrigan serve [--host 127.0.0.1] [--port 8765] [--cases DIR] [--generator G] [--detector D]
[--media-root DIR] [--token T]``: the analyst's web page (:mod:`mrigan.app.serve`).

Cases run the analysis of ``mrigan analyze`` with the same settings (``--config``, ``--set``,
``--every``, ``--device``), one at a time unless ``--workers N``. The models are loaded, and
every setting checked, before the server listens: a bad one ends here with one line, exit 2.
Off the loopback interface a token is required (generated and printed when not given).
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from mrigan.app.analysis import Analyzer, resolve_weights
from mrigan.app.commands.analyze import add_analysis_arguments, analysis_config, setup_lines
from mrigan.app.logs import set_format
from mrigan.app.serve.config import DEFAULT_MAX_UPLOAD_MB, ServeConfig, checked
from mrigan.config import check_field
from mrigan.errors import MriganError

MISSING = ("mrigan serve needs the optional web packages: pip install 'mrigan[serve]' "
           "(starlette, uvicorn, python-multipart)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; any other needs a token)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    parser.add_argument("--cases", type=Path, default=Path("runs/serve/cases"),
                        help="folder of the cases (one `analyze --out` folder each; kept across "
                             "restarts; default runs/serve/cases)")
    parser.add_argument("--media-root", type=Path, default=None,
                        help="a folder whose images and videos the page may pick (read only)")
    parser.add_argument("--token", default=None,
                        help="access token (header X-Mrigan-Token or cookie); generated and "
                             "printed when listening beyond 127.0.0.1 without one")
    parser.add_argument("--workers", type=int, default=1, help="analyses at once (default 1)")
    parser.add_argument("--max-upload-mb", type=int, default=DEFAULT_MAX_UPLOAD_MB,
                        help=f"largest upload in MiB (default {DEFAULT_MAX_UPLOAD_MB})")
    add_analysis_arguments(parser)  # --generator, --detector, --every, --device, --config, --set


def serve_config(args: argparse.Namespace) -> ServeConfig:
    """The :class:`ServeConfig` of the flags. Each ranged flag is checked first against the
    ``bounds`` of the field it sets, so the one-line error names the flag the user typed
    (``--workers: 0 is below the minimum 1``); ``--max-upload-mb`` is checked in MiB against the
    byte field's rule (positive, the same in either unit)."""
    for flag, name, value in (("--port", "port", args.port),
                              ("--workers", "workers", args.workers),
                              ("--max-upload-mb", "max_upload_bytes", args.max_upload_mb)):
        check_field(ServeConfig, name, value, flag)
    return ServeConfig(cases=args.cases, media_root=args.media_root, host=args.host,
                       port=args.port, token=args.token, workers=args.workers,
                       max_upload_bytes=args.max_upload_mb << 20)


def run(args: argparse.Namespace) -> int:
    if any(importlib.util.find_spec(m) is None for m in ("starlette", "uvicorn", "multipart")):
        raise MriganError(MISSING)
    import uvicorn

    # the app needs the optional extra checked above: the one function-local project import
    # (tests/test_layers.py: OPTIONAL_EXTRA_IMPORTS), an optional dependency, not a cycle
    from mrigan.app.serve.app import create_app

    set_format("%(asctime)s %(levelname)s %(name)s: %(message)s", progress_to_stderr=True)
    analyze_cfg = analysis_config(args)
    cfg, generated = checked(serve_config(args))
    generator, detector = resolve_weights(args.generator, args.detector)

    def make_analyzer() -> Analyzer:
        return Analyzer(generator, detector, analyze_cfg)

    first = make_analyzer()  # models loaded and checked before the server listens
    print(f"generator: {generator}")
    for line in setup_lines(first):
        print(line)
    app = create_app(cfg, make_analyzer, first)
    host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
    url = f"http://{host}:{cfg.port}/"
    print(f"cases: {cfg.cases}" + (f"; media root: {cfg.media_root}" if cfg.media_root else ""))
    if cfg.token:
        print(f"token{' (generated)' if generated else ''}: {cfg.token}")
        print(f"open {url}?token={cfg.token}")
    else:
        print(f"open {url}")
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning")
    return 0
