"""Readers for human realism ratings (MOS) in the formats the public benchmarks ship.

* DREAM (FF++ subset): header ``file,mos``; ``file`` is ``<Method>/<target>_<source>.mp4`` for
  a fake and ``original/<id>.mp4`` for a real video. Both FF++ ids are identities of the video
  (the target's head and scene, the source's face or expressions).
* DFGC-2022 VRA: header ``name,,,mos`` (two empty columns); ``name`` is
  ``<team>-<idpair>-<submission>-submit-<clip>-crop``. The method is the team (a team's
  submissions may share one face-swap tool, so splitting by submission would leak it);
  the identity is the target clip (the person and scene every submission re-used).

Every reader returns :class:`MosRecord` values with the same fields, so splits, joins and
training never look at the format again. Bad rows raise :class:`LabelError` naming the file
and line: a silently dropped label would bias a 100-video test set.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from mrigan.errors import MriganError
from mrigan.fileio import atomic_open


class LabelError(MriganError, ValueError):
    """A MOS label file that cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class MosRecord:
    """One rated video.

    ``key`` is the label's own name for the video (as written in the file); ``identities`` are
    every person id the video shows or was made from; ``method`` is the manipulation
    (``"original"`` for real videos); ``dataset`` names the benchmark.
    """

    key: str
    mos: float
    identities: tuple[str, ...]
    method: str
    dataset: str
    source: str = ""  # the label file it came from
    info: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def stem(self) -> str:
        """The key without folders or extension (``093_121`` for ``Face2Face/093_121.mp4``)."""
        name = PurePosixPath(self.key.replace("\\", "/")).name
        return name.rsplit(".", 1)[0] if "." in name else name


def _rows(path: Path) -> Iterable[tuple[int, list[str]]]:
    if not path.is_file():
        raise LabelError(f"{path}: MOS label file not found")
    with open(path, newline="", encoding="utf-8-sig") as fh:  # -sig: Excel's BOM
        for lineno, row in enumerate(csv.reader(fh), start=1):
            if not row or all(not c.strip() for c in row):
                continue
            yield lineno, [c.strip() for c in row]


def _mos(path: Path, lineno: int, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise LabelError(f"{path}:{lineno}: MOS {text!r} is not a number") from None
    if not 1.0 <= value <= 5.0:
        raise LabelError(f"{path}:{lineno}: MOS {value} is outside the 1-5 opinion scale")
    return value


_FFPP_FAKE = re.compile(r"^(?P<target>\d{3})_(?P<source>\d{3})$")
_FFPP_REAL = re.compile(r"^(?P<target>\d{3})$")


def read_dream(path: str | os.PathLike) -> list[MosRecord]:
    """DREAM's ``file,mos`` CSV of FaceForensics++ videos."""
    path = Path(path)
    records: list[MosRecord] = []
    rows = iter(_rows(path))
    _, header = next(rows, (0, []))
    if [h.lower() for h in header[:2]] != ["file", "mos"]:
        raise LabelError(f"{path}:1: expected the DREAM header 'file,mos', got {','.join(header)!r}")
    for lineno, row in rows:
        if len(row) < 2:
            raise LabelError(f"{path}:{lineno}: expected 'file,mos', got {','.join(row)!r}")
        key, mos = row[0], _mos(path, lineno, row[1])
        parts = PurePosixPath(key.replace("\\", "/")).parts
        if len(parts) < 2:
            raise LabelError(f"{path}:{lineno}: {key!r} is not '<Method>/<video>.mp4'")
        method = parts[-2]
        stem = parts[-1].rsplit(".", 1)[0]
        m = (_FFPP_REAL if method.lower() == "original" else _FFPP_FAKE).match(stem)
        if not m:
            raise LabelError(f"{path}:{lineno}: {key!r} is not an FF++ video name "
                             "('<target>_<source>' for fakes, '<id>' for originals)")
        ids = tuple(v for v in m.groupdict().values() if v is not None)
        records.append(MosRecord(key=key, mos=mos, identities=ids,
                                 method="original" if method.lower() == "original" else method,
                                 dataset="dream", source=str(path)))
    return _check_unique(records, path)


_DFGC_NAME = re.compile(
    r"^(?P<team>\d+)-(?P<idpair>\d+)-(?P<submission>\d+)-submit-(?P<clip>\w+?)(?:-crop)?$")


def read_dfgc(path: str | os.PathLike) -> list[MosRecord]:
    """DFGC-2022 VRA's ``name,,,mos`` CSV (MOS in the fourth column)."""
    path = Path(path)
    records: list[MosRecord] = []
    rows = iter(_rows(path))
    _, header = next(rows, (0, []))
    if len(header) < 4 or header[0].lower() != "name" or header[3].lower() != "mos":
        raise LabelError(f"{path}:1: expected the DFGC header 'name,,,mos', got {','.join(header)!r}")
    for lineno, row in rows:
        if len(row) < 4:
            raise LabelError(f"{path}:{lineno}: expected 'name,,,mos', got {','.join(row)!r}")
        name, mos = row[0], _mos(path, lineno, row[3])
        m = _DFGC_NAME.match(name)
        if not m:
            raise LabelError(f"{path}:{lineno}: {name!r} is not a DFGC-2022 name "
                             "'<team>-<idpair>-<submission>-submit-<clip>[-crop]'")
        records.append(MosRecord(key=name, mos=mos, identities=(f"clip{m['clip']}",),
                                 method=f"team{m['team']}", dataset="dfgc2022", source=str(path),
                                 info={"idpair": m["idpair"], "submission": m["submission"]}))
    return _check_unique(records, path)


def _check_unique(records: list[MosRecord], path: Path) -> list[MosRecord]:
    seen: set[str] = set()
    for r in records:
        if r.key in seen:
            raise LabelError(f"{path}: video {r.key!r} is rated twice")
        seen.add(r.key)
    if not records:
        raise LabelError(f"{path}: no rated video")
    return records


def read_table(path: str | os.PathLike) -> list[MosRecord]:
    """The library's own ``file,mos,identity,method`` CSV, for any data set a user rates.

    ``identity`` may list several ids joined by ``+`` (a face swap shows two people).
    """
    path = Path(path)
    records: list[MosRecord] = []
    rows = iter(_rows(path))
    _, header = next(rows, (0, []))
    low = [h.lower() for h in header]
    need = ["file", "mos", "identity", "method"]
    if low[:4] != need:
        raise LabelError(f"{path}:1: expected the header {','.join(need)!r}, got {','.join(header)!r}")
    for lineno, row in rows:
        if len(row) < 4 or not row[2] or not row[3]:
            raise LabelError(f"{path}:{lineno}: expected 'file,mos,identity,method', got {','.join(row)!r}")
        records.append(MosRecord(key=row[0], mos=_mos(path, lineno, row[1]),
                                 identities=tuple(row[2].split("+")), method=row[3],
                                 dataset="table", source=str(path)))
    return _check_unique(records, path)


READERS = {"dream": read_dream, "dfgc": read_dfgc, "table": read_table}


def sniff_format(path: str | os.PathLike) -> str:
    """``dream`` or ``dfgc`` from the header line."""
    path = Path(path)
    for _, header in _rows(path):
        low = [h.lower() for h in header]
        if low[:4] == ["file", "mos", "identity", "method"]:
            return "table"
        if low[:2] == ["file", "mos"]:
            return "dream"
        if len(low) >= 4 and low[0] == "name" and low[3] == "mos":
            return "dfgc"
        raise LabelError(f"{path}:1: unknown MOS label header {','.join(header)!r}; "
                         "known: 'file,mos' (DREAM), 'name,,,mos' (DFGC-2022), "
                         "'file,mos,identity,method' (table)")
    raise LabelError(f"{path}: empty MOS label file")


def read_mos_labels(path: str | os.PathLike, fmt: str = "auto") -> list[MosRecord]:
    """Read one label file; ``fmt`` is ``dream``, ``dfgc`` or ``auto`` (from the header)."""
    fmt = sniff_format(path) if fmt == "auto" else fmt
    if fmt not in READERS:
        raise LabelError(f"unknown MOS label format {fmt!r}; known: auto, {', '.join(READERS)}")
    return READERS[fmt](path)


def write_table(path: str | os.PathLike, records: Iterable[MosRecord]) -> None:
    """Write records as a ``file,mos,identity,method`` CSV (atomically)."""

    with atomic_open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "mos", "identity", "method"])
        for r in records:
            w.writerow([r.key, f"{float(r.mos):.4f}", "+".join(r.identities), r.method])
