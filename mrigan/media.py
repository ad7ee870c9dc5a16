"""The one table of media file suffixes (lower case, with the dot).

Every part of the project that decides "is this file an image / a video?" reads these, so a
folder scan, a CSV listing and the analyst pipeline agree on what they accept.
"""

from __future__ import annotations

import os
from pathlib import Path

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES: tuple[str, ...] = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg",
                                   ".mpeg", ".wmv", ".flv")
MEDIA_SUFFIXES: tuple[str, ...] = IMAGE_SUFFIXES + VIDEO_SUFFIXES


def is_image(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def is_video(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


__all__ = ["IMAGE_SUFFIXES", "MEDIA_SUFFIXES", "VIDEO_SUFFIXES", "is_image", "is_video"]
