"""Celeb-DF (v2): ``Celeb-real/id<A>_<NNNN>.mp4``, ``YouTube-real/<NNNNN>.mp4``,
``Celeb-synthesis/id<A>_id<B>_<NNNN>.mp4`` (video NNNN of celebrity A with B's face, made from
``Celeb-real/id<A>_<NNNN>.mp4``) and ``List_of_testing_videos.txt`` (``<1 real|0 fake> <path>``).

Celeb-DF's own test videos share identities with its training videos; the official split is
kept in ``dataset_split`` and the builder still groups splits by identity.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from datasets_builders.sources.base import (
    SOURCES,
    VIDEO_SUFFIXES,
    Listing,
    SourceError,
    VideoItem,
    require_dir,
)

REAL_NAME = re.compile(r"^(id\d+)_(\d+)$")
FAKE_NAME = re.compile(r"^(id\d+)_(id\d+)_(\d+)$")
YOUTUBE_NAME = re.compile(r"^(\d+)$")


def read_test_list(path: Path, listing: Listing) -> dict[str, str]:
    """``relative path -> "real"/"fake"`` from Celeb-DF's test list; bad lines are skipped."""
    tests: dict[str, str] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or parts[0] not in ("0", "1"):
            listing.skip(f"{path}:{n}", "bad test-list line")
            continue
        tests[parts[1]] = "real" if parts[0] == "1" else "fake"
    return tests


@SOURCES.register("celebdf")
def read_celebdf(root: str | os.PathLike, *, name: str = "celebdf",
                 test_list: str = "List_of_testing_videos.txt") -> Listing:
    root = require_dir(root, "Celeb-DF")
    folders = [root / d for d in ("Celeb-real", "YouTube-real", "Celeb-synthesis")]
    if not any(f.is_dir() for f in folders):
        raise SourceError(root, "not a Celeb-DF folder (no Celeb-real/, YouTube-real/, Celeb-synthesis/)")
    out = Listing()
    tests = read_test_list(root / test_list, out) if (root / test_list).is_file() else {}
    seen: set[str] = set()

    def split_of(rel: str, label: str, path: Path) -> str:
        seen.add(rel)
        if rel not in tests:
            return "train"
        if tests[rel] != label:
            out.skip(path, "test list label disagrees with folder")
        return "test"

    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() not in VIDEO_SUFFIXES:
                continue
            rel = f"{folder.name}/{path.name}"
            vid = f"{folder.name}/{path.stem}"
            if folder.name == "Celeb-real" and (m := REAL_NAME.match(path.stem)):
                out.items.append(VideoItem(path=path, label="real", source=name, video_id=vid,
                                           identity=m.group(1), method="original",
                                           dataset_split=split_of(rel, "real", path)))
            elif folder.name == "YouTube-real" and YOUTUBE_NAME.match(path.stem):
                out.items.append(VideoItem(path=path, label="real", source=name, video_id=vid,
                                           identity=f"youtube_{path.stem}", method="original",
                                           dataset_split=split_of(rel, "real", path)))
            elif folder.name == "Celeb-synthesis" and (m := FAKE_NAME.match(path.stem)):
                target, donor, number = m.groups()
                original = root / "Celeb-real" / f"{target}_{number}{path.suffix}"
                out.items.append(VideoItem(path=path, label="fake", source=name, video_id=vid,
                                           identity=target, identities=(target, donor),
                                           method="Celeb-DF", original=original,
                                           original_id=f"Celeb-real/{target}_{number}",
                                           dataset_split=split_of(rel, "fake", path)))
            else:
                out.skip(path, "name does not follow Celeb-DF naming")
    for rel in sorted(set(tests) - seen):
        out.skip(root / rel, "listed file missing")
    return out
