"""How a file becomes a case: an upload kept under ``CASES/.uploads/<id>/``, or a pick under
``--media-root`` analysed where it lies. Either way the file's content decides whether it is an
image or a video (:func:`mrigan.media.sniff_media`), never its name; what is not one is refused
and nothing of it kept. :class:`Refused` carries the HTTP status and the one-line reason."""

from __future__ import annotations

import os
import shutil
from pathlib import Path, PurePosixPath
from typing import IO, Any

from mrigan.app.serve.paths import PathRefused, resolve_under
from mrigan.app.serve.store import Case, CaseStore, new_id
from mrigan.media import is_image, sniff_file

MEDIA_LIST_LIMIT = 1000
CHUNK = 1 << 20


class Refused(Exception):
    """A request the server turns down: ``status`` and a one-line ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def display_name(filename: str | None) -> str:
    """An uploaded file's name as shown: its last component, control characters dropped."""
    base = PurePosixPath((filename or "").replace("\\", "/")).name
    clean = "".join(c for c in base if c.isprintable())[:200]
    return clean or "upload"


def safe_stem(name: str) -> str:
    """A file-system-safe stem for the stored upload (the suffix comes from the content)."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(name).stem)[:60] or "upload"


def keep_upload(store: CaseStore, data: IO[bytes], filename: str | None) -> Case:
    """Copy an uploaded file into a new case's upload folder, named after its content's kind;
    the case is added to ``store`` (queued). Refused (415) when it is no image or video."""
    name = display_name(filename)
    case_id = new_id()
    folder = store.upload_dir(case_id)
    folder.mkdir(parents=True)
    part = folder / ".upload.part"
    try:
        with open(part, "wb") as fh:
            shutil.copyfileobj(data, fh, CHUNK)
        found = sniff_file(part)
        if found is None:
            raise Refused(415, f"{name}: not an image or video (its content is no known image "
                               "or video format; the name does not count)")
        kind, suffix = found
        dest = folder / f"{safe_stem(name)}{suffix}"
        os.replace(part, dest)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return store.add(Case(id=case_id, name=name, input=str(dest), kind=kind, source="upload"))


def pick_file(store: CaseStore, media_root: Path, rel: str) -> Case:
    """A new case on the file ``rel`` under ``media_root`` (read where it lies)."""
    path = under_media(media_root, rel)
    if not path.is_file():
        raise Refused(404, f"{rel}: no such file under the media root")
    found = sniff_file(path)
    if found is None:
        raise Refused(415, f"{rel}: not an image or video (its content is no known image or "
                           "video format)")
    kind = found[0]
    if (kind == "image") != is_image(path):  # the analysis reads a file by its suffix
        raise Refused(415, f"{rel}: its content is {'an image' if kind == 'image' else 'a video'}"
                           " but its name says otherwise: rename the file")
    return store.add(Case(id=new_id(), name=rel, input=str(path), kind=kind,
                          source="media-root"))


def under_media(media_root: Path, rel: str) -> Path:
    try:
        return resolve_under(media_root, rel)
    except PathRefused as exc:
        raise Refused(403, f"{rel}: {exc.problem}") from exc


def media_listing(media_root: Path, rel: str) -> dict[str, Any]:
    """Folders, images and videos (by content, and named as what they are) in one folder under
    ``media_root``; hidden names and links are left out."""
    folder = media_root if rel in ("", ".") else under_media(media_root, rel)
    if not folder.is_dir():
        raise Refused(404, f"{rel}: no such folder under the media root")
    entries = []
    for child in sorted(folder.iterdir(), key=lambda p: p.name.lower()):
        if child.name.startswith(".") or child.is_symlink():
            continue
        path = child.relative_to(media_root).as_posix()
        if child.is_dir():
            entries.append({"name": child.name, "path": path, "kind": "folder"})
        elif child.is_file():
            found = _sniff_quietly(child)
            if found is not None and (found[0] == "image") == is_image(child):
                entries.append({"name": child.name, "path": path, "kind": found[0],
                                "size": child.stat().st_size})
        if len(entries) >= MEDIA_LIST_LIMIT:
            break
    top = folder == media_root
    parent = None if top else folder.parent.relative_to(media_root).as_posix()
    return {"dir": "" if top else folder.relative_to(media_root).as_posix(),
            "parent": "" if parent == "." else parent, "entries": entries}


def _sniff_quietly(path: Path) -> tuple[str, str] | None:
    try:
        return sniff_file(path)
    except OSError:
        return None  # unreadable: not offered
