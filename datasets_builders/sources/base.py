"""The one interface every dataset reader implements."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from mrigan.errors import MriganError
from mrigan.media import IMAGE_SUFFIXES, VIDEO_SUFFIXES  # noqa: F401 (re-exported to the readers)
from mrigan.registry import Registry

SOURCES = Registry("dataset source")



class SourceError(MriganError, ValueError):
    """A dataset folder or listing file that cannot be read at all (names the file)."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.reason = reason
        super().__init__(reason, path)


@dataclass(frozen=True)
class VideoItem:
    """One video (or still image) of a dataset.

    ``video_id`` is unique within its source and safe as a relative folder path (it may hold
    ``/``). ``identities`` lists every person whose face is in the item (a face swap shows the
    target's head with the source's face), so a splitter can keep all of them together;
    ``identity`` is the primary one (the target / the original video's person).
    """

    path: Path
    label: str  # "real" | "fake"
    source: str
    video_id: str
    identity: str
    method: str
    original: Path | None = None  # for fakes: the real video it was made from
    original_id: str | None = None
    identities: tuple[str, ...] = ()
    dataset_split: str | None = None  # the dataset's own split, when it has one
    is_image: bool = False

    def __post_init__(self) -> None:
        if self.label not in ("real", "fake"):
            raise ValueError(f"{self.path}: label must be 'real' or 'fake', got {self.label!r}")
        if not self.identities:
            object.__setattr__(self, "identities", (self.identity,))


@dataclass(frozen=True)
class Skip:
    path: str
    reason: str


@dataclass
class Listing:
    items: list[VideoItem] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)

    def skip(self, path: str | os.PathLike, reason: str) -> None:
        self.skipped.append(Skip(str(path), reason))

    def skip_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(s.reason for s in self.skipped).items()))

    def counts(self) -> dict[str, int]:
        c = Counter(i.label for i in self.items)
        return {"real": c.get("real", 0), "fake": c.get("fake", 0)}


def require_dir(root: str | os.PathLike, what: str) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise SourceError(root, f"{what} folder not found")
    return root


def read_source(kind: str, root: str | os.PathLike, **options) -> Listing:
    """List a dataset with the reader registered as ``kind``; ``options`` go to the reader."""
    return SOURCES.get(kind)(root, **options)


def safe_id(text: str) -> str:
    """A relative, portable id (may contain ``/``) from a path-like string: no ``..``, no
    absolute root, only ``[A-Za-z0-9._-]`` inside segments."""
    parts = []
    for seg in str(text).replace("\\", "/").split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            parts.append("__")
            continue
        parts.append("".join(c if c.isalnum() or c in "._-" else "_" for c in seg))
    if not parts:
        raise ValueError(f"cannot make an id from {text!r}")
    return "/".join(parts)


def stem_id(path: Path, root: Path) -> str:
    """``safe_id`` of ``path`` relative to ``root``, without the file suffix.

    A path outside ``root`` gets ``abs/<its absolute path>``: stable whatever else is listed,
    so resuming a build after adding rows keeps every finished video's id.
    """
    path, root = Path(os.path.abspath(path)), Path(os.path.abspath(root))
    try:
        rel = str(path.relative_to(root).with_suffix(""))
    except ValueError:
        rel = "abs/" + "/".join(path.with_suffix("").parts[1:])
    return safe_id(rel)
