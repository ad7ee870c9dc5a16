"""Resumable benchmark stages: each writes ``<out>/<stage>/`` and a ``stage.json`` record.

A stage's *settings* (the config sections it reads, the fingerprints of the stages it reads
from, and the content hash of its input files) are written to ``stage.json`` before it starts
(``"done": false``) and again when it finishes (``"done": true``). On a rerun:

* done with the same settings -> skipped (its recorded result is returned);
* started but not done (a killed run) with the same settings -> run again; the libraries
  underneath resume their own work (MRI-DF/face-set records, GAN/detector ``last.pt``);
* other settings -> :class:`StageSettingsError` naming the differing keys, unless
  ``restart``: then the stage folder is removed and the stage runs from scratch (and so does
  every stage downstream of it, since their settings hold its fingerprint).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mrigan import fingerprint as settings_fp
from mrigan.errors import MriganError
from mrigan.fileio import atomic_write_json

_log = logging.getLogger(__name__)

STAGE_FILE = "stage.json"


class BenchmarkError(MriganError, ValueError):
    """A benchmark that cannot run as asked (inputs, settings, earlier outputs)."""


class StageSettingsError(BenchmarkError):
    """A stage folder made with other settings than the ones asked for now."""


def fingerprint(settings: Any) -> str:
    """A short stable hash of JSON-able settings (:func:`mrigan.fingerprint.digest`)."""
    return settings_fp.digest(settings, length=16, compact=False)


def file_hash(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


differing_keys = settings_fp.differing_keys


def _plain(obj: Any) -> Any:
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


class Stages:
    """Runs the benchmark's stages under one output folder; records what each did."""

    def __init__(self, out: Path, *, restart: bool = False, log: Callable[[str], None] = _log.info):
        self.out, self.restart, self.log = Path(out), restart, log
        self.timings: dict[str, dict] = {}

    def folder(self, name: str) -> Path:
        return self.out / name

    def run(self, name: str, settings: dict, fn: Callable[[Path], dict]) -> dict:
        """Run ``fn(stage_folder) -> result`` unless a finished run with ``settings`` exists.
        Returns the result with ``"fingerprint"`` added."""
        folder = self.folder(name)
        record_path = folder / STAGE_FILE
        settings = _plain(settings)
        fp = fingerprint(settings)
        if record_path.is_file():
            record = json.loads(record_path.read_text(encoding="utf-8"))
            if record.get("settings") != settings:
                keys = differing_keys(record.get("settings"), settings)
                if not self.restart:
                    raise StageSettingsError(
                        f"stage {name!r} was run with other settings ({', '.join(keys)}); "
                        "use the earlier settings, another --out, or --restart to redo it",
                        record_path)
                self.log(f"[{name}] settings changed ({', '.join(keys)}): redoing the stage")
                shutil.rmtree(folder)
            elif record.get("done"):
                self.log(f"[{name}] done earlier with the same settings: skipped")
                self.timings[name] = {"skipped": True, "seconds": record.get("seconds")}
                return {**record["result"], "fingerprint": fp}
            else:
                self.log(f"[{name}] resuming an unfinished run")
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(record_path, {"stage": name, "settings": settings, "done": False})
        self.log(f"[{name}] running")
        t0, c0 = time.perf_counter(), time.process_time()
        result = _plain(fn(folder))
        seconds = round(time.perf_counter() - t0, 2)
        cpu = round(time.process_time() - c0, 2)  # all threads: sizes presets for other machines
        atomic_write_json(record_path, {"stage": name, "settings": settings, "done": True,
                                        "seconds": seconds, "cpu_seconds": cpu, "result": result})
        self.timings[name] = {"skipped": False, "seconds": seconds, "cpu_seconds": cpu}
        self.log(f"[{name}] finished in {seconds:.1f}s ({cpu:.1f} CPU-s)")
        return {**result, "fingerprint": fp}


__all__ = ["STAGE_FILE", "BenchmarkError", "StageSettingsError", "Stages", "differing_keys", "file_hash",
           "fingerprint"]
