"""Decode ahead in a background thread, and decode a video once for two passes.

``background(make_iter)``: the items of ``make_iter()`` produced by a thread ``depth`` items
ahead of the consumer (PyAV and OpenCV release the GIL while decoding, so decoding the next
frames overlaps MTCNN, SSIM and PNG writing). Exceptions raised by the producer (e.g.
``VideoDecodeError``) are raised in the consumer at the same position; a consumer that stops
early stops the thread.

``FrameMemo``: the builder detects faces on the original in one pass and crops it (with its
fakes) in a second; the memo keeps the first pass's decoded frames, up to a byte budget, so the
second pass does not decode the original again. Replayed frames are the same arrays (exact).

``decoded_once(source)``: a frame source (called once per pass) whose first pass decodes in the
background and is kept (up to a byte budget); later passes replay it (the analysis' detection,
second-pass and crop passes over one video decode it once).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator

import numpy as np

_DONE = object()


class _Raised:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def background(make_iter: Callable[[], Iterable], depth: int = 4) -> Iterator:
    """Iterate ``make_iter()`` in a daemon thread, ``depth`` items ahead (see the module doc)."""
    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in make_iter():
                if not put(item):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            put(_Raised(exc))
            return
        put(_DONE)

    thread = threading.Thread(target=produce, name="mrigan-decode", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, _Raised):
                raise item.exc
            yield item
    finally:
        stop.set()
        thread.join()


class FrameMemo:
    """Keeps ``(index, frame)`` items seen by :meth:`record` while their bytes fit ``budget``;
    :meth:`replay` gives them back only if the recording ran to its end within the budget."""

    def __init__(self, budget: int) -> None:
        self.budget = int(budget)
        self._items: list[tuple[int, np.ndarray]] = []
        self._bytes = 0
        self._complete = False
        self._over = False

    def record(self, items: Iterable[tuple[int, np.ndarray]]) -> Iterator[tuple[int, np.ndarray]]:
        self._items, self._bytes, self._complete, self._over = [], 0, False, False
        for index, frame in items:
            if not self._over:
                self._bytes += frame.nbytes
                if self._bytes > self.budget:
                    self._over, self._items = True, []
                else:
                    self._items.append((index, frame))
            yield index, frame
        self._complete = not self._over

    def replay(self) -> Iterator[tuple[int, np.ndarray]] | None:
        """The recorded items (once), or None when the recording is partial or over budget."""
        if not self._complete:
            return None
        items, self._items, self._complete = self._items, [], False
        return iter(items)


def decoded_once(source: Callable[[], Iterable[tuple[int, np.ndarray]]], budget: int = 1 << 30,
                 depth: int = 4) -> Callable[[], Iterator[tuple[int, np.ndarray]]]:
    """A frame source like ``source`` (each call starts a pass of ``(index, frame)`` items):
    the first pass is decoded by ``background`` ``depth`` items ahead and kept while its frames
    fit ``budget`` bytes; once one pass has run to its end within the budget, every later call
    replays it (the same arrays) without decoding. A pass cut short (an exception, a consumer
    that stops) or over budget keeps nothing: the next call decodes again, as ``source`` would."""
    kept: list[tuple[int, np.ndarray]] | None = None

    def frames() -> Iterator[tuple[int, np.ndarray]]:
        nonlocal kept
        if kept is not None:
            yield from kept
            return
        memo = FrameMemo(budget)
        yield from memo.record(background(source, depth))
        replay = memo.replay()
        if replay is not None:
            kept = list(replay)

    return frames


__all__ = ["FrameMemo", "background", "decoded_once"]
