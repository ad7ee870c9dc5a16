"""The cases of ``mrigan serve``: one folder per case under ``--cases``, kept across restarts.

``CASES/<id>/`` is exactly what ``mrigan analyze --out CASES/<id>`` writes (results.json,
report.html, per-input folders), plus ``case.json``: the case's record (its name, where its
input is, its status and error), rewritten atomically whenever its status changes. An uploaded
file is kept in ``CASES/.uploads/<id>/`` (outside the case folder: an analysis never writes
beside its input). Ids are random (``secrets``), so a case cannot be guessed from another.

On start the store reads every ``case.json`` back: queued cases are queued again, a case that
was running when the server stopped is marked failed (``interrupted``), finished ones stay.
Live progress (frames, faces, phase) is kept in memory only.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import shutil
import tempfile
import threading
import time
import zipfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from mrigan.fileio import atomic_write_json

log = logging.getLogger(__name__)

ID_PATTERN = re.compile(r"^[0-9a-f]{16}$")
STATUSES = ("queued", "running", "done", "failed", "cancelled")
FINISHED = ("done", "failed", "cancelled")
UPLOADS = ".uploads"
RECORD = "case.json"
INTERRUPTED = "interrupted: the server stopped while this case was running (submit it again)"


def new_id() -> str:
    return secrets.token_hex(8)


@dataclass
class Case:
    """One case: what is persisted (the fields) and its live progress (``live``)."""

    id: str
    name: str  # what the analyst knows it by: the uploaded file's name or the media-root path
    input: str  # absolute path of the file analysed
    kind: str  # "video" or "image", from the file's content
    source: str  # "upload" or "media-root"
    status: str = "queued"
    error: str | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    live: dict[str, Any] = field(default_factory=dict, repr=False)  # not persisted
    cancel_requested: bool = field(default=False, repr=False)  # not persisted

    def record(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("live")
        data.pop("cancel_requested")
        return data

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> Case:
        names = {f.name for f in fields(cls)} - {"live", "cancel_requested"}
        case = cls(**{k: v for k, v in data.items() if k in names})
        if not ID_PATTERN.match(case.id) or case.status not in STATUSES:
            raise ValueError(f"not a case record (id {case.id!r}, status {case.status!r})")
        return case


class CaseStore:
    """The cases under one folder; safe to use from the web handlers and the workers at once."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._cases: dict[str, Case] = {}

    # -- locations

    def case_dir(self, case_id: str) -> Path:
        return self.root / case_id

    def upload_dir(self, case_id: str) -> Path:
        return self.root / UPLOADS / case_id

    # -- loading

    def load(self) -> list[Case]:
        """Read the cases back from disk; returns the ones still queued (oldest first)."""
        queued = []
        for folder in sorted(self.root.iterdir()):
            record = folder / RECORD
            if not ID_PATTERN.match(folder.name) or folder.is_symlink() or not record.is_file():
                continue
            try:
                case = Case.from_record(json.loads(record.read_text(encoding="utf-8")))
            except (ValueError, TypeError) as exc:
                log.warning("%s: not a case record, left alone (%s)", record, exc)
                continue
            if case.id != folder.name:
                log.warning("%s: its id %s is not its folder's name, left alone", record, case.id)
                continue
            if case.status == "running":
                case.status, case.error, case.finished = "failed", INTERRUPTED, time.time()
                self._save(case)
            self._cases[case.id] = case
            if case.status == "queued":
                queued.append(case)
        return sorted(queued, key=lambda c: c.created)

    # -- cases

    def add(self, case: Case) -> Case:
        self.case_dir(case.id).mkdir(parents=True, exist_ok=False)
        with self._lock:
            self._cases[case.id] = case
            self._save(case)
        return case

    def get(self, case_id: str) -> Case | None:
        if not ID_PATTERN.match(case_id):
            return None
        with self._lock:
            return self._cases.get(case_id)

    def all(self) -> list[Case]:
        with self._lock:
            return sorted(self._cases.values(), key=lambda c: c.created, reverse=True)

    def update(self, case: Case, **changes: Any) -> None:
        """Change persisted fields (status, error, times) and write the record."""
        with self._lock:
            for key, value in changes.items():
                setattr(case, key, value)
            self._save(case)

    def remove(self, case: Case) -> None:
        """Delete a finished case: its folder and its uploaded file."""
        with self._lock:
            self._cases.pop(case.id, None)
        for folder in (self.case_dir(case.id), self.upload_dir(case.id)):
            if folder.is_dir() and not folder.is_symlink():
                shutil.rmtree(folder)

    def zip(self, case: Case) -> tempfile.SpooledTemporaryFile:
        """The case folder's files (no links, no hidden temp files) as a zip under ``<id>/``,
        spooled to disk past 32 MB; rewound, for the caller to read and close."""
        folder = self.case_dir(case.id)
        spool = tempfile.SpooledTemporaryFile(max_size=32 << 20)
        with zipfile.ZipFile(spool, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(folder.rglob("*")):
                if path.is_file() and not path.is_symlink() and not path.name.startswith("."):
                    zf.write(path, f"{case.id}/{path.relative_to(folder).as_posix()}")
        spool.seek(0)
        return spool

    def _save(self, case: Case) -> None:
        atomic_write_json(self.case_dir(case.id) / RECORD, case.record())
