"""Test media made from the shared clips (written under tmp_path, never into ../shared)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np

from datasets_builders.frames import iter_frames


def darkened_clip(src, dest, gains, every: int = 30):
    """An mp4 of every ``every``-th frame of ``src``, frame k scaled in brightness by ``gains[k]``
    (a dark / low-contrast clip for the face-recall tests)."""
    frames = [f for _, f in iter_frames(src, every=every, max_frames=len(gains))]
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(dest), cv2.VideoWriter_fourcc(*"mp4v"), 25, (w, h))
    for frame, gain in zip(frames, gains, strict=True):
        dark = np.clip(np.rint(frame.astype(np.float32) * gain), 0, 255).astype(np.uint8)
        writer.write(cv2.cvtColor(dark, cv2.COLOR_RGB2BGR))
    writer.release()
    return dest


def write_video(dest, frames, *, fps: int = 25, display_rotation: int = 0, times=None,
                decoy=None):
    """An H.264 mp4 of ``frames`` (RGB uint8) written with PyAV alone (no ffmpeg program).

    ``display_rotation``: a display matrix (PyAV's counter-clockwise degrees, as a phone writes
    a portrait video: -90 = show turned 90 degrees clockwise); ``times``: each frame's own
    presentation time in seconds (a variable-frame-rate video); ``decoy``: ``(w, h)`` of a
    black first video stream written before the real one (a file with two video streams)."""
    from fractions import Fraction

    import av

    h, w = frames[0].shape[:2]
    with av.open(str(dest), "w") as out:
        streams = []
        if decoy is not None:
            d = out.add_stream("libx264", rate=fps)
            d.width, d.height, d.pix_fmt = decoy[0], decoy[1], "yuv420p"
            streams.append((d, np.zeros((decoy[1], decoy[0], 3), np.uint8)))
        s = out.add_stream("libx264", rate=fps)
        s.width, s.height = w, h
        s.pix_fmt = "yuv420p" if w % 2 == 0 and h % 2 == 0 else "yuv444p"  # 4:2:0 needs even sides
        s.options = {"crf": "12"}
        if times is not None:
            s.codec_context.time_base = Fraction(1, 1000)
        if display_rotation:
            s.set_display_rotation(display_rotation)
        for k, frame in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            if times is not None:
                vf.pts, vf.time_base = round(times[k] * 1000), Fraction(1, 1000)
            out.mux(s.encode(vf))
            for d, black in streams:
                out.mux(d.encode(av.VideoFrame.from_ndarray(black, format="rgb24")))
        out.mux(s.encode())
        for d, _ in streams:
            out.mux(d.encode())
    return dest


def bench_module(name: str):
    """A ``bench/<name>.py`` script as a module (bench/ is scripts, not a package)."""
    path = Path(__file__).resolve().parents[1] / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def shared_media(shared_data):
    """The seven real people of the shared media (``bench/realism_graded.py``'s list)."""
    return bench_module("realism_graded").shared_media(shared_data)

