"""Decode every Nth frame of a video, streaming (never the whole video in memory).

PyAV, not OpenCV, measured with ``bench/build_mri_df.py`` on the FF++ sample (2 shared, loaded
cores): decoding every frame PyAV (codec threads) ran 1.3-1.5x faster than OpenCV; for every
10th/30th frame OpenCV's ``grab``/``retrieve`` was up to 1.6x faster. Decoding is ~6% of a
build (MTCNN is ~87%), so speed does not decide; PyAV does on correctness: it reports corrupt
data as an exception naming the file (OpenCV's ``grab`` just returns False, a truncated video
looks like a short one), and frame indices are exact decode positions, identical for a fake
and its original.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mrigan.errors import MriganError


class VideoDecodeError(MriganError, RuntimeError):
    """A video that cannot be opened or decoded; carries the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.reason = reason
        super().__init__(reason, path)


@dataclass(frozen=True)
class VideoInfo:
    path: str
    width: int  # as shown: after the display rotation (a phone's portrait video is taller than wide)
    height: int
    fps: float  # average rate; frame times come from each frame's own timestamp
    frames: int  # as declared by the container (0 when unknown)
    codec: str
    stream: int = 0  # index (among the file's streams) of the video stream read
    video_streams: int = 1  # how many video streams the file holds (cover pictures not counted)
    rotation: int = 0  # degrees clockwise the stored frames are turned to be shown upright
    flipped: bool = False  # the display matrix also mirrors the frames

    @property
    def duration(self) -> float:
        return self.frames / self.fps if self.fps else 0.0

    @property
    def notes(self) -> list[str]:
        """What a reader should know about how the frames were read (stream choice, rotation)."""
        out = []
        if self.video_streams > 1:
            out.append(f"{self.video_streams} video streams: read stream #{self.stream} "
                       f"({self.width}x{self.height}), the largest")
        if self.rotation or self.flipped:
            out.append(f"display matrix applied: stored frames turned {self.rotation} degrees "
                       "clockwise" + (" and mirrored" if self.flipped else "") + " to stand upright")
        return out


def _main_stream(container):
    """The video stream a viewer would show: the largest picture (width x height), then the one
    marked default, then the first; cover pictures (``attached_pic``) are not video."""
    import av

    streams = [s for s in container.streams.video
               if not s.disposition & av.stream.Disposition.attached_pic]
    if not streams:
        return None, 0
    best = max(streams, key=lambda s: (int(s.codec_context.width or 0) * int(s.codec_context.height or 0),
                                       bool(s.disposition & av.stream.Disposition.default),
                                       -s.index))
    return best, len(streams)


def _open(path: Path):
    import av

    if not path.is_file():
        what = "not a regular file" if path.exists() and not path.is_dir() else "no such file"
        raise VideoDecodeError(path, what)
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise VideoDecodeError(path, f"cannot open: {exc}") from exc
    stream, count = _main_stream(container)
    if stream is None:
        container.close()
        raise VideoDecodeError(path, "no video stream")
    return container, stream, count


# ----------------------------------------------------------------------------- orientation


def display_matrix(frame) -> tuple[int, int, int, int] | None:
    """The frame's display matrix as its 2x2 part ``(a, b, c, d)`` rounded to -1/0/1 (ffmpeg's
    layout: a shown pixel's ``x' = a*x + c*y``, ``y' = b*x + d*y``), or None when the frame has
    none or it is not a multiple of 90 degrees (then the frame is used as stored)."""
    import av

    # iterating a frame's side data gave SideData objects up to PyAV 18.1.0 and gives their
    # types (the keys of a mapping) from 18.1.1 on: take both
    container = frame.side_data
    for item in container:
        side = item if hasattr(item, "type") else container[item]
        if side.type == av.sidedata.sidedata.Type.DISPLAYMATRIX:
            m = np.frombuffer(bytes(side), dtype=np.int32)
            if m.size < 5:
                return None
            a, b, c, d = (float(v) / 65536.0 for v in (m[0], m[1], m[3], m[4]))
            r = tuple(int(round(v)) for v in (a, b, c, d))
            if any(abs(v - q) > 0.01 for v, q in zip((a, b, c, d), r, strict=True)):
                return None
            if not ((r[0] and r[3] and not r[1] and not r[2])
                    or (r[1] and r[2] and not r[0] and not r[3])):
                return None
            return None if r == (1, 0, 0, 1) else r
    return None


def orient(image: np.ndarray, matrix: tuple[int, int, int, int] | None) -> np.ndarray:
    """The stored frame turned as its display matrix says (what a player shows)."""
    if matrix is None:
        return image
    a, b, c, d = matrix
    if a:  # no swap: x' = a x, y' = d y
        out = image[::d, ::a]
    else:  # swap: x' = c y, y' = b x -> shown[row=b*x, col=c*y] = stored[y, x]
        out = image.transpose(1, 0, *range(2, image.ndim))[::b, ::c]
    return np.ascontiguousarray(out)


def _turn(matrix: tuple[int, int, int, int] | None) -> tuple[int, bool]:
    """(degrees clockwise, mirrored) of a display matrix."""
    if matrix is None:
        return 0, False
    a, b, c, d = matrix
    flipped = a * d - b * c < 0
    if flipped:  # mirror x first: x -> -x, then the rest is a pure rotation
        a, b = -a, -b
    # pure rotation by theta clockwise (y down): x' = cos x - sin y, y' = sin x + cos y
    deg = {(1, 0): 0, (0, 1): 90, (-1, 0): 180, (0, -1): 270}[(a, b)]
    return deg, flipped


def video_info(path: str | os.PathLike) -> VideoInfo:
    """Size (as shown, after the display rotation), frame rate, declared frame count and which
    stream is read. The display matrix is per frame: the first frame's is read (one decoded
    frame); a file whose first frame does not decode reports it unturned (decoding it then
    fails with the reason)."""
    import av

    path = Path(path)
    container, s, count = _open(path)
    try:
        fps = float(s.average_rate) if s.average_rate else 0.0
        width, height = int(s.codec_context.width), int(s.codec_context.height)
        matrix = None
        try:
            first = next(container.decode(s), None)
        except (av.error.FFmpegError, UnicodeDecodeError):
            first = None
        if first is not None:
            matrix = display_matrix(first)
            width, height = first.width, first.height
        rotation, flipped = _turn(matrix)
        if rotation in (90, 270):
            width, height = height, width
        return VideoInfo(str(path), width, height, fps, int(s.frames or 0),
                         str(s.codec_context.name), stream=int(s.index), video_streams=count,
                         rotation=rotation, flipped=flipped)
    finally:
        container.close()


def frame_layout(path: str | os.PathLike) -> dict:
    """What shapes the frames read from ``path`` beyond its bytes, when it is not "as stored,
    from its only video stream": ``{"rotation", "flipped", "stream"}``; ``{}`` otherwise, and
    for a file that cannot be opened (decoding it then says why). For caches of per-frame
    results (face boxes): boxes found on frames read another way are not reused."""
    try:
        info = video_info(path)
    except VideoDecodeError:
        return {}
    if not (info.rotation or info.flipped or info.video_streams > 1):
        return {}
    return {"rotation": info.rotation, "flipped": info.flipped, "stream": info.stream}


def iter_frames(path: str | os.PathLike, every: int = 10,
                max_frames: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(frame_index, RGB uint8 HxWx3)`` for frames 0, every, 2*every, ...

    The one frame reader (:func:`iter_timed_frames`) without the times.
    """
    timed = iter_timed_frames(path, every, max_frames)
    return ((index, frame) for index, _time, frame in timed)


def iter_timed_frames(path: str | os.PathLike, every: int = 10, max_frames: int | None = None,
                      ) -> Iterator[tuple[int, float | None, np.ndarray]]:
    """Yield ``(frame_index, time_s, RGB uint8 HxWx3)`` for frames 0, every, 2*every, ...

    The project's one frame reader. The stream read is the main video stream (the largest
    picture; :func:`video_info` says which). Each frame is turned upright as its display matrix
    says (a phone's portrait video is stored sideways with a +-90 degree rotation), as a player
    shows it. ``time_s`` is the frame's own presentation time from the stream's start (a
    variable-frame-rate video's frames are not ``index / fps``); None when the file gives none.

    The file is opened at call time, so a missing or unreadable video raises
    ``VideoDecodeError`` at once; corrupt data met while decoding raises it from the iterator.
    A video that decodes to no frame at all is an error too, and so is a truncated one: when
    decoding reaches the end, fewer frames than the container declares raise
    ``VideoDecodeError`` (the first 30% of a faststart MP4 otherwise decodes "cleanly" as a
    short video). ``max_frames`` caps the number of frames yielded (not decoded); a run stopped
    by it does not reach the end and so does not check the count.
    """
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    if max_frames is not None and max_frames < 0:
        raise ValueError(f"max_frames must be >= 0, got {max_frames}")
    path = Path(path)
    container, stream, _count = _open(path)
    return _decode(container, stream, path, every, max_frames)


def _frame_time(frame, start: int | None) -> float | None:
    if frame.pts is None or frame.time_base is None:
        return None
    return float((frame.pts - (start or 0)) * frame.time_base)


def _decode(container, stream, path: Path, every: int, max_frames: int | None):
    import av

    yielded = 0
    decoded = 0
    try:
        if max_frames == 0:
            return
        stream.thread_type = "AUTO"
        start = stream.start_time
        try:
            for index, frame in enumerate(container.decode(stream)):
                decoded += 1
                if index % every:
                    continue
                image = orient(frame.to_ndarray(format="rgb24"), display_matrix(frame))
                yield index, _frame_time(frame, start), image
                yielded += 1
                if max_frames is not None and yielded >= max_frames:
                    return
        except av.error.FFmpegError as exc:
            raise VideoDecodeError(path, f"decoding failed after {decoded} frames: {exc}") from exc
        if decoded == 0:
            raise VideoDecodeError(path, "no decodable frame")
        declared = int(stream.frames or 0)
        if declared and decoded < declared:
            # a cut-off file decodes without an exception (threaded decoding drops the error)
            raise VideoDecodeError(path, f"truncated: decoded {decoded} of the {declared} frames "
                                         "the container declares")
    finally:
        container.close()
