"""Atomic file writes (a temp file in the destination folder, then ``os.replace``) and image reads.

:class:`BackgroundImageSaver` runs :func:`atomic_save_image` in one background thread (PNG
encoding and ``fsync`` release the GIL, so they overlap the caller's work), with a bounded number
of images pending; its errors are raised in the caller's thread.

:func:`read_image` refuses images larger than a pixel cap before decoding them (the size comes
from the file header: a 1.2 MB 20000x20000 PNG would otherwise take 3 GB and 30 s). The cap is
``max_pixels`` if given, else the environment variable ``MRIGAN_MAX_IMAGE_PIXELS``, else
:data:`DEFAULT_MAX_IMAGE_PIXELS` (100 Mpx; ``0`` turns the cap off).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import queue
import re
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from mrigan.errors import MriganError

#: Largest image (width x height) :func:`read_image` decodes unless told otherwise.
DEFAULT_MAX_IMAGE_PIXELS = 100_000_000
MAX_PIXELS_ENV = "MRIGAN_MAX_IMAGE_PIXELS"


class ImageFileError(MriganError, ValueError):
    """An image file that cannot be read: corrupt, unsupported, or over the pixel cap."""


class ImageNotFoundError(MriganError, FileNotFoundError):
    """An image path that does not exist."""


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open a temp file beside ``path``; on success rename it over ``path``.

    On an exception the temp file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_process_umask())  # mkstemp makes 0600; outputs are for sharing
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@functools.lru_cache(maxsize=1)
def _process_umask() -> int:
    """The process umask (read once: setting and restoring it is the only portable way)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def printable(text: str) -> str:
    """``text`` as valid Unicode for a page or a terminal: the bytes of a file name that are
    not UTF-8 (kept by Python as lone surrogates U+DC80..U+DCFF) shown as ``\\xNN``, any other
    lone surrogate as ``\\uXXXX``; everything else unchanged."""
    if text.isascii():
        return text
    return "".join(f"\\x{ord(c) - 0xDC00:02x}" if 0xDC80 <= ord(c) <= 0xDCFF
                   else f"\\u{ord(c):04x}" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def atomic_save_image(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an RGB (HxWx3) or grey (HxW) uint8 image; the format follows the suffix."""
    import cv2

    path = Path(path)
    if image.dtype != np.uint8:
        raise TypeError(f"{path}: expected a uint8 image, got {image.dtype}")
    arr = image[..., ::-1] if image.ndim == 3 else image
    ok, buf = cv2.imencode(path.suffix or ".png", np.ascontiguousarray(arr))
    if not ok:
        raise OSError(f"{path}: could not encode image")
    try:
        atomic_write_bytes(path, buf.tobytes())
    except OSError as exc:
        if exc.errno is not None and exc.filename is None:  # e.g. ENOSPC from write/fsync
            exc.filename = str(path)  # str(exc) then names the file
        raise


_STOP = object()


class BackgroundImageSaver:
    """:func:`atomic_save_image` in one background thread, at most ``pending`` images queued.

    Use it as a context manager: ``save(path, image)`` queues a copy of ``image`` (blocking
    while ``pending`` images wait, so memory stays bounded) and returns; leaving the block
    waits until every queued image is on disk and stops the thread. So a caller that records
    what it saved only after the block has ended never records a file that does not exist.

    Errors: the first error of a save (e.g. ``OSError`` for a full disk or an unwritable
    folder, naming the file) is raised in the caller's thread, as the same exception, by the
    next ``save`` or by leaving the block; later queued images are not written. When the block
    is left by an exception of the caller, the images still queued are dropped (their record
    will not be written either), the thread is stopped, and a save error is attached to the
    caller's exception as a note rather than lost. Bytes on disk are those of
    :func:`atomic_save_image` called directly.
    """

    def __init__(self, pending: int = 16) -> None:
        if pending < 1:
            raise ValueError(f"pending must be >= 1, got {pending}")
        self._queue: queue.Queue = queue.Queue(maxsize=pending)
        self._error: BaseException | None = None
        self._raised = False
        self._drop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mrigan-image-saver", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if self._error is not None or self._drop.is_set():
                continue
            path, image = item
            try:
                atomic_save_image(path, image)
            except BaseException as exc:  # raised in the caller's thread (_raise_error)
                exc.add_note(f"while saving {path} in the background image saver")
                self._error = exc

    def _raise_error(self) -> None:
        if self._error is not None:
            self._raised = True
            raise self._error

    def save(self, path: str | os.PathLike, image: np.ndarray) -> None:
        """Queue ``image`` (copied) for ``atomic_save_image(path, image)``."""
        self._raise_error()
        if not self._thread.is_alive():
            raise RuntimeError("BackgroundImageSaver used after it was closed")
        if image.dtype != np.uint8:  # the same check as atomic_save_image, raised here
            raise TypeError(f"{path}: expected a uint8 image, got {image.dtype}")
        self._queue.put((Path(path), np.array(image, copy=True)))

    def close(self, drop: bool = False) -> None:
        """Write (or, with ``drop``, discard) what is queued, stop the thread, raise a save error."""
        if drop:
            self._drop.set()
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
        if not drop:
            self._raise_error()

    def __enter__(self) -> BackgroundImageSaver:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is None:
            self.close()
            return
        self.close(drop=True)
        if self._error is not None and self._error is not exc and not self._raised:
            exc.add_note(f"a background image save also failed: {type(self._error).__name__}: "
                         f"{self._error}")


def max_image_pixels(max_pixels: int | None = None) -> int:
    """The pixel cap in force: ``max_pixels``, else ``$MRIGAN_MAX_IMAGE_PIXELS``, else 100 Mpx."""
    if max_pixels is not None:
        return int(max_pixels)
    raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_IMAGE_PIXELS
    try:
        return int(float(raw))
    except ValueError:
        raise MriganError(f"environment variable {MAX_PIXELS_ENV}={raw!r} is not a number") from None


def image_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """(width, height) from the image file's header without decoding the pixels; None when
    Pillow does not know the format (the decoder then decides). Over Pillow's own bomb limit
    the header's size is not exposed: ``(pixels, 1)`` is returned."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:  # lazy: reads the header only
                return im.size
    except Image.DecompressionBombError as exc:  # over Pillow's own cap (179 Mpx)
        found = re.search(r"\((\d+) pixels\)", str(exc))
        return (int(found.group(1)), 1) if found else (Image.MAX_IMAGE_PIXELS * 2 + 1, 1)
    except (UnidentifiedImageError, OSError, ValueError):
        return None


def image_frame_count(path: str | os.PathLike) -> int:
    """How many frames (an animated WebP/GIF/PNG) or pages (a TIFF) an image file holds, from
    its header; 1 when Pillow cannot tell. :func:`read_image` reads the first."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return max(1, int(getattr(im, "n_frames", 1)))
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return 1


def read_image(path: str | os.PathLike, *, max_pixels: int | None = None) -> np.ndarray:
    """Read an image file as RGB uint8 HxWx3, with a clear error naming the file.

    Images of more than ``max_pixels`` pixels (see :func:`max_image_pixels`) are refused from
    their header, before any decoding.
    """
    import cv2

    path = Path(path)
    if not path.is_file():
        raise ImageNotFoundError("no such image file", path)
    cap = max_image_pixels(max_pixels)
    size = image_size(path)
    if cap > 0 and size is not None and size[0] * size[1] > cap:
        dims = f"{size[0]}x{size[1]} = " if size[1] > 1 else ""
        raise ImageFileError(
            f"image of {dims}{size[0] * size[1]:,} pixels is over the cap of "
            f"{cap:,} (raise it with {MAX_PIXELS_ENV} or max_pixels=)", path)
    data = np.fromfile(path, dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise ImageFileError("not a readable image (empty, corrupt or unsupported format)", path)
    return np.ascontiguousarray(img[..., ::-1])


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


#: How far up from the run folder a recorded path may climb before it is hashed instead.
PORTABLE_MAX_UP = 3


def portable_path(value: str | os.PathLike, run_dir: str | os.PathLike) -> str:
    """An absolute path as a shipped file may record it: relative to ``run_dir`` (the folder of
    the run that wrote it) when it lies within :data:`PORTABLE_MAX_UP` levels up from there,
    else ``"sha256:<first 16 hex of the path's SHA-256>"`` (which still tells two runs on the
    same path apart, and names no folder of the machine). Relative paths pass unchanged."""
    import hashlib

    text = os.fspath(value)
    if not os.path.isabs(text):
        return text
    rel = os.path.relpath(text, os.path.abspath(os.fspath(run_dir)))
    if rel.split(os.sep).count("..") <= PORTABLE_MAX_UP and not os.path.isabs(rel):
        return rel
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]


def portable_paths(obj: Any, run_dir: str | os.PathLike) -> Any:
    """``obj`` (JSON-like) with every string that is an absolute path made portable
    (:func:`portable_path`)."""
    if isinstance(obj, dict):
        return {k: portable_paths(v, run_dir) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [portable_paths(v, run_dir) for v in obj]
    if isinstance(obj, str) and os.path.isabs(obj):
        return portable_path(obj, run_dir)
    return obj
