"""FaceForensics++ in its own layout.

``original_sequences/youtube/<comp>/videos/<id>.mp4`` are the reals;
``manipulated_sequences/<Method>/<comp>/videos/<target>_<source>.mp4`` is the target video with
the source video's face (Deepfakes, FaceSwap) or expression (Face2Face, NeuralTextures), so a
fake's original is ``<target>.mp4`` and both ids are people in it.

Official split lists (``train.json``, ``val.json``, ``test.json`` of the FF++ repository, in
``split_lists`` or else in ``<root>/splits/`` or ``<root>/`` when present): lists of id pairs
such as ``["071", "054"]``, meaning fakes ``071_054`` and ``054_071`` and originals ``071`` and
``054`` belong to that split (kept as ``dataset_split``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

from datasets_builders.sources.base import (
    SOURCES,
    VIDEO_SUFFIXES,
    Listing,
    SourceError,
    VideoItem,
    require_dir,
)

FAKE_NAME = re.compile(r"^(\d+)_(\d+)$")
SPLIT_FILES = {"train": "train.json", "val": "val.json", "test": "test.json"}


def read_split_lists(folder: str | os.PathLike) -> dict[str, str]:
    """``{"071": "train", "071_054": "train", "054_071": "train", ...}`` from the official
    lists in ``folder`` (the files present; an id in two lists is an error naming the file)."""
    folder = Path(folder)
    out: dict[str, str] = {}
    for split, fname in SPLIT_FILES.items():
        path = folder / fname
        if not path.is_file():
            continue
        try:
            pairs = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SourceError(path, f"not a readable FF++ split list: {exc}") from exc
        if not isinstance(pairs, list) or not all(
                isinstance(p, list) and len(p) == 2 and all(isinstance(v, str) for v in p) for p in pairs):
            raise SourceError(path, 'an FF++ split list is a JSON list of id pairs like ["071", "054"]')
        for a, b in pairs:
            for key in (a, b, f"{a}_{b}", f"{b}_{a}"):
                if out.setdefault(key, split) != split:
                    raise SourceError(path, f"id {key} is in both {out[key]} and {split}")
    return out


def _split_folder(root: Path, split_lists: str | None) -> Path | None:
    if split_lists:
        folder = Path(split_lists)
        if not any((folder / f).is_file() for f in SPLIT_FILES.values()):
            raise SourceError(folder, "no FF++ split list (train.json, val.json, test.json) here")
        return folder
    for folder in (root / "splits", root):
        if any((folder / f).is_file() for f in SPLIT_FILES.values()):
            return folder
    return None


@SOURCES.register("ffpp")
def read_ffpp(root: str | os.PathLike, *, name: str = "ffpp", compression: str = "c23",
              methods: Sequence[str] = (), originals: str = "youtube",
              split_lists: str | None = None) -> Listing:
    """List FF++ reals and fakes of one compression level; ``methods`` restricts the fakes;
    ``split_lists``: the folder of the official split lists (see the module doc)."""
    root = require_dir(root, "FaceForensics++")
    folder = _split_folder(root, split_lists)
    splits = read_split_lists(folder) if folder is not None else {}
    orig_dir = root / "original_sequences" / originals / compression / "videos"
    manip_root = root / "manipulated_sequences"
    if not orig_dir.is_dir() and not manip_root.is_dir():
        raise SourceError(root, "not a FaceForensics++ folder (no original_sequences/ or "
                                "manipulated_sequences/)")
    out = Listing()
    if orig_dir.is_dir():
        for path in sorted(orig_dir.iterdir()):
            if path.suffix.lower() not in VIDEO_SUFFIXES:
                continue
            out.items.append(VideoItem(path=path, label="real", source=name,
                                       video_id=f"original/{path.stem}", identity=path.stem,
                                       method="original", dataset_split=splits.get(path.stem)))
    wanted = set(methods)
    method_dirs = sorted(p for p in manip_root.iterdir() if p.is_dir()) if manip_root.is_dir() else []
    for mdir in method_dirs:
        if wanted and mdir.name not in wanted:
            continue
        vdir = mdir / compression / "videos"
        if not vdir.is_dir():
            continue
        for path in sorted(vdir.iterdir()):
            if path.suffix.lower() not in VIDEO_SUFFIXES:
                continue
            m = FAKE_NAME.match(path.stem)
            if not m:
                out.skip(path, "name is not <target>_<source>.mp4")
                continue
            target, source = m.groups()
            original = orig_dir / f"{target}{path.suffix}"
            out.items.append(VideoItem(path=path, label="fake", source=name,
                                       video_id=f"{mdir.name}/{path.stem}", identity=target,
                                       identities=(target, source), method=mdir.name,
                                       original=original, original_id=f"original/{target}",
                                       dataset_split=splits.get(path.stem)))
    missing = sorted(wanted - {p.name for p in method_dirs})
    for method in missing:
        out.skip(manip_root / method, "method folder missing")
    return out


__all__ = ["read_ffpp"]
