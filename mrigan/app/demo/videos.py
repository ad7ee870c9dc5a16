"""Short H.264 videos of unseen synthetic scenes (a moving camera, some segments fake) with
their per-frame ground truth; the demo analyses them like an analyst's evidence."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np

from mrigan.app.demo.config import DemoConfig
from mrigan.app.demo.scenes import Photo, blend_into, render_scene, scene_params
from mrigan.fileio import atomic_write_json


def write_video(path: Path, frames: list[np.ndarray], fps: float, crf: int) -> Path:
    """H.264 (yuv420p) MP4 with PyAV, written to a temp name then renamed."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.mp4")
    h, w = frames[0].shape[:2]
    with av.open(str(tmp), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "medium"}
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    os.replace(tmp, path)
    return path


def synthetic_videos(cfg: DemoConfig, folder: Path, photos: list[Photo]) -> dict[str, list[bool]]:
    """Short videos of unseen scenes (a camera moving between two random views); returns the
    ground truth: for each video, whether each frame is fake."""
    photos = {p.name: p for p in photos}
    n = cfg.video.frames
    third = n // 3
    plan = {  # (photo, fake frames)
        "collins_fake_middle.mp4": ("collins", [third <= i < 2 * third for i in range(n)]),
        "hopper_real.mp4": ("hopper", [False] * n),
        "hopper_fake.mp4": ("hopper", [True] * n),
    }
    rng = np.random.default_rng([cfg.data.seed, 99])  # a stream never used for training scenes
    truth = {}
    for name, (photo, fake_at) in plan.items():
        a, b = scene_params(rng, cfg.data.synthetic), scene_params(rng, cfg.data.synthetic)
        b["flip"] = a["flip"]
        blend_seed = int(rng.integers(2**31))
        frames = []
        for i in range(n):
            t = i / max(n - 1, 1)
            p = {k: (a[k] if k == "flip" else
                     [x + t * (y - x) for x, y in zip(a[k], b[k], strict=True)] if isinstance(a[k], list)
                     else a[k] + t * (b[k] - a[k])) for k in a}
            frame, square = render_scene(photos[photo], p, cfg.data.synthetic.scene_size)
            frames.append(blend_into(frame, square, blend_seed, cfg.data.synthetic.quality)
                          if fake_at[i] else frame)
        write_video(folder / name, frames, cfg.video.fps, cfg.video.crf)
        truth[name] = fake_at
    atomic_write_json(folder / "truth.json", truth)
    return truth
