"""Test media made from the shared clips (written under tmp_path, never into ../shared)."""

from __future__ import annotations

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
