"""The one guard every command uses before it writes: outputs never go inside an input folder.

Analysts' evidence folders and users' dataset folders must stay exactly as received; writing
beside an input would also make a later folder scan pick the outputs up as inputs. An input
*file* guards its own folder; an input *folder* guards itself. The reverse is refused too: an
output folder that already holds an input file (outputs and inputs never mix).

:class:`BatchRun` is the other half: one writer per output folder (:class:`FolderLock`) and an
``INCOMPLETE.json`` marker while a batch runs, left with the reason and the items not done when
it is cut short.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import socket
from collections.abc import Iterable
from pathlib import Path

from mrigan.errors import MriganError
from mrigan.fileio import atomic_write_bytes, atomic_write_json


class OutputLocationError(MriganError, ValueError):
    """An output path inside an input folder, an input inside the output folder, or a file
    where a folder is needed."""


def guarded_folder(path: str | os.PathLike) -> Path:
    """The folder an input protects: itself for a folder, its parent for a file."""
    p = Path(path).resolve()
    return p if p.is_dir() else p.parent


def check_output_dir(out_dir: str | os.PathLike, inputs: Iterable[str | os.PathLike]) -> Path:
    """Resolve ``out_dir`` and refuse it when it is an existing file, equals or lies inside the
    folder of any input, or contains any input. Returns the resolved folder (not created)."""
    out = Path(out_dir).resolve()
    if out.exists() and not out.is_dir():
        raise OutputLocationError("output must be a folder, but a file of that name exists",
                                  out_dir)
    blocking = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise OutputLocationError(f"output folder cannot be made: {blocking} is a file", out_dir)
    for raw in inputs:
        guarded = guarded_folder(raw)
        if out == guarded or guarded in out.parents:
            raise OutputLocationError(
                f"output folder lies inside the input folder {guarded}: choose an output "
                "outside the inputs (inputs are never written to)", out_dir)
        if out in Path(raw).resolve().parents:
            raise OutputLocationError(
                f"input {raw} is inside the output folder: choose an output folder that "
                "holds no input", out_dir)
    return out


# ----------------------------------------------------------------------------- one writer, marked


class FolderLock:
    """A lock file naming its holder (pid, host), held while one writer writes a folder.

    Taken with ``O_EXCL``; a second writer gets ``error`` naming the holder; a lock left by a
    dead process on this host (or one half-written by a writer killed at once) is taken over.
    """

    def __init__(self, path: str | os.PathLike, holder: str = "another mrigan run",
                 scope: str = "into this folder", error: type[MriganError] = OutputLocationError,
                 ) -> None:
        self.path = Path(path)
        self.holder, self.scope, self.error = holder, scope, error
        self.held = False

    def __enter__(self) -> FolderLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname()}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner is not None and not self._stale(owner):
                    raise self.error(f"{self.holder} (pid {owner.get('pid')} on "
                                     f"{owner.get('host')}) is writing {self.scope}; wait for "
                                     "it or use another --out", self.path) from None
                self.path.unlink(missing_ok=True)  # a dead writer's lock: take it over
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(me, fh)
            self.held = True
            return self
        raise self.error("could not take the lock", self.path)

    def _owner(self) -> dict | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else None
        except (OSError, ValueError):
            return None  # half-written by a writer killed at once: stale

    @staticmethod
    def _stale(owner: dict) -> bool:
        if owner.get("host") != socket.gethostname():
            return False  # another machine's process cannot be checked: assume alive
        try:
            os.kill(int(owner.get("pid", -1)), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, ValueError, TypeError, OverflowError):
            return False
        return False

    def __exit__(self, *exc) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


def stop_reason(exc: BaseException | None) -> str:
    """How a batch ended early, in words (``interrupted (SIGINT)``, ``OSError: ...``)."""
    if exc is None:
        return "stopped"
    if isinstance(exc, KeyboardInterrupt):
        return f"interrupted ({getattr(exc, 'signal_name', 'SIGINT')})"
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:500]


class BatchRun:
    """One batch command writing ``out``: the folder's writer lock and an incomplete marker.

    Every batch command (analyze, build-dataset, build-faces, mri) writes through one of these.
    Entering takes the lock (``lock``: its path, default ``out/.mrigan.lock``) and writes the
    marker ``out/INCOMPLETE<suffix>.json`` (command, start, the items to do); ``done(item)``
    records an item as finished; leaving normally removes the marker, leaving by an exception
    (Ctrl-C, SIGTERM, a full disk) rewrites it with the reason and the items not done, so a cut
    run is never mistaken for a finished one (after a SIGKILL the marker lists the items of the
    start). A bad input (a :class:`MriganError`) met before any item was done leaves the folder
    as it was: an earlier run's marker is put back, a folder this run made is removed again
    when empty. Nothing else is removed.
    """

    def __init__(self, out: str | os.PathLike, command: str, todo: Iterable[str] = (), *,
                 lock: FolderLock | None = None, suffix: str = "") -> None:
        self.out = Path(out)
        self.command = command
        self.todo = [str(t) for t in todo]
        self.finished: set[str] = set()
        self.lock = lock or FolderLock(self.out / LOCK_NAME)
        self.marker = self.out / f"INCOMPLETE{suffix}.json"
        self.started = ""
        self.made_folder = False
        self.earlier_marker: bytes | None = None

    @property
    def not_done(self) -> list[str]:
        return [t for t in self.todo if t not in self.finished]

    def plan(self, todo: Iterable[str]) -> None:
        """The items to do, once known inside the lock (the marker is rewritten)."""
        self.todo = [str(t) for t in todo]
        self._write(None)

    def done(self, item: str) -> None:
        self.finished.add(str(item))

    def _write(self, stopped: str | None) -> None:
        atomic_write_json(self.marker, {
            "command": self.command, "started": self.started, "pid": os.getpid(),
            "complete": False, "stopped": stopped, "not_done": self.not_done})

    def __enter__(self) -> BatchRun:
        self.made_folder = not self.out.exists()
        self.lock.__enter__()
        try:
            if self.marker.is_file():  # a run cut short before: kept if this one is refused
                self.earlier_marker = self.marker.read_bytes()
            self.started = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
            self._write(None)
        except BaseException:
            self.lock.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        clean = exc is None or (isinstance(exc, MriganError) and not self.finished)
        try:
            if clean and exc is not None and self.earlier_marker is not None:
                atomic_write_bytes(self.marker, self.earlier_marker)
            elif clean:
                self.marker.unlink(missing_ok=True)
            else:
                try:
                    self._write(stop_reason(exc))
                except OSError as again:  # e.g. the disk that stopped the run is still full
                    exc.add_note(f"the incomplete marker {self.marker} could not be updated: "
                                 f"{again}")
        finally:
            self.lock.__exit__(None, None, None)
        if clean and exc is not None and self.made_folder:
            for folder in sorted((p for p in self.out.rglob("*") if p.is_dir()), reverse=True):
                if not any(folder.iterdir()):
                    folder.rmdir()
            if not any(self.out.iterdir()):
                self.out.rmdir()


LOCK_NAME = ".mrigan.lock"
