"""Shared set-up of the `mrigan serve` tests: a fast analysis (a tiny generator, few frames),
the application on a cases folder, and a real uvicorn server on a free 127.0.0.1 port."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from mrigan.app.analysis import AnalyzeConfig, Analyzer
from mrigan.app.serve import ServeConfig, checked
from mrigan.app.serve.app import create_app
from mrigan.config import from_dict


def fast_analyzer(generator: Path, **frames) -> Analyzer:
    """The analysis `mrigan analyze --every 100 --set faces.max_side=640` runs (CPU)."""
    cfg = from_dict(AnalyzeConfig, {"device": "cpu", "frames": {"every": 100, **frames},
                                    "faces": {"max_side": 640}})
    return Analyzer(generator, None, cfg)


def make_app(analyzer: Analyzer, cases: Path, **settings):
    cfg, _generated = checked(ServeConfig(cases=cases, **settings))
    return create_app(cfg, lambda: analyzer, analyzer)


class LiveServer:
    """uvicorn serving ``app`` in a thread on a free 127.0.0.1 port until ``stop()``."""

    def __init__(self, app) -> None:
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(60)
        self.sock.close()
