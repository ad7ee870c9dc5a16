"""A folder of face images (FFHQ, FDF, ...): extra reals with black MRIs, or a labelled image
folder of a face set (``label: fake`` for a folder of fake images)."""

from __future__ import annotations

import os

from datasets_builders.sources.base import (
    IMAGE_SUFFIXES,
    SOURCES,
    Listing,
    SourceError,
    VideoItem,
    require_dir,
    stem_id,
)


@SOURCES.register("images")
def read_image_folder(root: str | os.PathLike, *, name: str = "images",
                      identity_from: str = "file", label: str = "real") -> Listing:
    """Every image below ``root`` (sorted), as a real item.

    ``identity_from``: ``file`` (FFHQ: one person per image) or ``folder`` (one folder per
    person) decides what the splitter keeps together. ``label``: every image's label.
    """
    if label not in ("real", "fake"):
        raise SourceError(root, f"label must be 'real' or 'fake', got {label!r}")
    if identity_from not in ("file", "folder"):
        raise ValueError(f"identity_from must be 'file' or 'folder', got {identity_from!r}")
    root = require_dir(root, "image")
    out = Listing()
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise SourceError(root, f"no images ({', '.join(IMAGE_SUFFIXES)}) below this folder")
    for path in paths:
        vid = stem_id(path, root)
        identity = vid if identity_from == "file" else stem_id(path.parent, root.parent)
        out.items.append(VideoItem(path=path, label=label, source=name, video_id=vid,
                                   identity=identity, is_image=True,
                                   method="original" if label == "real" else "unknown"))
    return out
