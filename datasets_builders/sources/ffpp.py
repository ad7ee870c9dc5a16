"""FaceForensics++ in its own layout.

``original_sequences/youtube/<comp>/videos/<id>.mp4`` are the reals;
``manipulated_sequences/<Method>/<comp>/videos/<target>_<source>.mp4`` is the target video with
the source video's face (Deepfakes, FaceSwap) or expression (Face2Face, NeuralTextures), so a
fake's original is ``<target>.mp4`` and both ids are people in it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from datasets_builders.sources.base import (
    SOURCES,
    VIDEO_SUFFIXES,
    Listing,
    SourceError,
    VideoItem,
    require_dir,
)

FAKE_NAME = re.compile(r"^(\d+)_(\d+)$")


@SOURCES.register("ffpp")
def read_ffpp(root: str | os.PathLike, *, name: str = "ffpp", compression: str = "c23",
              methods: Sequence[str] = (), originals: str = "youtube") -> Listing:
    """List FF++ reals and fakes of one compression level; ``methods`` restricts the fakes."""
    root = require_dir(root, "FaceForensics++")
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
                                       method="original"))
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
                                       original=original, original_id=f"original/{target}"))
    missing = sorted(wanted - {p.name for p in method_dirs})
    for method in missing:
        out.skip(manip_root / method, "method folder missing")
    return out


__all__ = ["read_ffpp"]
