"""Which files an analysis takes (``discover_inputs``), their output folder names, and opening
one input as a source of ``(frame index, RGB frame)`` streams. Suffixes: ``mrigan.media``."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from datasets_builders.frames import iter_timed_frames, video_info
from mrigan.app.analysis.config import AnalyzeFramesConfig
from mrigan.errors import MriganError
from mrigan.fileio import image_frame_count, read_image
from mrigan.media import IMAGE_SUFFIXES, VIDEO_SUFFIXES, is_image, is_video

__all__ = ["IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "ImageReadError", "InputItem", "discover_inputs",
           "input_slug", "open_input"]


class ImageReadError(MriganError, ValueError):
    """An image file that cannot be decoded."""


@dataclass(frozen=True)
class InputItem:
    path: Path
    kind: str  # "video", "image", "missing", "special" (a FIFO, a device) or "empty" (a folder)


def discover_inputs(paths: Iterable[str | os.PathLike]) -> list[InputItem]:
    """Files named on the command line, and the images/videos found (recursively) in folders.

    A file given explicitly is taken whatever its suffix (as a video unless it has an image
    suffix: the decoder then says whether it is one); inside folders only known image and video
    suffixes are taken, hidden files and folders skipped. Order: as given, folders sorted.
    Duplicates (the same resolved file twice) are kept once. A path that exists but is no
    regular file (a FIFO, ``/dev/zero``) is ``special`` (never opened: reading it could block
    or never end), a folder holding no known media is ``empty``: both are reported, by name.
    """
    items: list[InputItem] = []
    seen: set[Path] = set()

    def add(p: Path, kind: str) -> None:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            items.append(InputItem(p, kind))

    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = False
            for f in sorted(p.rglob("*")):
                rel = f.relative_to(p).parts
                if not f.is_file() or any(part.startswith(".") for part in rel):
                    continue
                if is_image(f):
                    add(f, "image")
                    found = True
                elif is_video(f):
                    add(f, "video")
                    found = True
            if not found:
                add(p, "empty")
        elif p.is_file():
            add(p, "image" if is_image(p) else "video")
        elif p.exists():
            add(p, "special")
        else:
            add(p, "missing")
    return items


def input_slug(path: Path, index: int) -> str:
    """The input's folder name under the output folder: its index and a file-system-safe stem."""
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in path.stem)[:60] or "input"
    return f"{index:02d}_{stem}"


def open_input(item: InputItem, frames: AnalyzeFramesConfig,
               ) -> tuple[Callable[[], Iterator[tuple[int, np.ndarray]]], dict[str, Any]]:
    """``(source, meta)``: ``source()`` starts the sampled ``(index, RGB uint8 frame)`` stream of
    one input (an image is the single frame 0; a video is decoded again on each call, never held
    in memory) and ``meta`` is what is known before decoding (width, height, fps, the number of
    sampled frames when the container says; for a video also the stream read, its display
    rotation, ``notes`` on both, and ``frame_times``: each decoded frame's own time, filled as
    the frames stream)."""
    if item.kind == "image":
        try:
            img = read_image(item.path)
        except ValueError as exc:
            raise ImageReadError(str(exc)) from exc
        pages = image_frame_count(item.path)
        notes = ([f"an image of {pages} frames/pages (animated or multi-page): only its first "
                  "is analysed"] if pages > 1 else [])
        return lambda: iter([(0, img)]), {"width": img.shape[1], "height": img.shape[0],
                                          "notes": notes}

    info = video_info(item.path)
    times: dict[int, float] = {}

    def stream() -> Iterator[tuple[int, np.ndarray]]:
        for index, time, frame in iter_timed_frames(item.path, every=frames.every,
                                                    max_frames=frames.max_frames):
            if time is not None:
                times[index] = time
            yield index, frame

    sampled = -(-info.frames // frames.every) if info.frames else None
    if sampled is not None and frames.max_frames is not None:
        sampled = min(sampled, frames.max_frames)
    return stream, {"width": info.width, "height": info.height, "fps": info.fps or None,
                    "sampled_frames": sampled, "video_stream": info.stream,
                    "rotation": info.rotation, "frame_times": times, "notes": info.notes}
