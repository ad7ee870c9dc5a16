"""Distractions of the MRI-GAN paper: random text or shapes drawn over a video.

A distraction is random 8-character text or a circle / rectangle with a random colour, size
and thickness, either static, rolling in one of four directions (wrapping around), or
spontaneous (jumping to a random place, shown in random frames). Positions are fractions of
the frame, and every random choice per frame comes from ``(plan seed, frame index)``, so a
fake and its original get exactly the same overlay and their SSIM map does not show it.
"""

from __future__ import annotations

import string

import cv2
import numpy as np

KINDS = ("text", "circle", "rectangle")
MOTIONS = ("static", "rolling", "spontaneous")
DIRECTIONS = ("left", "right", "up", "down")
TEXT_ALPHABET = string.ascii_letters + string.digits


def sample_distraction(rng: np.random.Generator) -> dict:
    """A random distraction as plain JSON-able values."""
    kind = str(rng.choice(KINDS))
    spec: dict = {
        "kind": kind,
        "color": [int(v) for v in rng.integers(0, 256, size=3)],
        "motion": str(rng.choice(MOTIONS)),
        "x": float(rng.uniform(0.05, 0.95)),
        "y": float(rng.uniform(0.05, 0.95)),
    }
    if kind == "text":
        spec["text"] = "".join(rng.choice(list(TEXT_ALPHABET), size=8))
        spec["size"] = float(rng.uniform(0.6, 2.5))  # font scale at 720 px frame height
        spec["thickness"] = int(rng.integers(1, 6))
    else:
        spec["size"] = float(rng.uniform(0.03, 0.12))  # radius / half side, fraction of min(h, w)
        spec["thickness"] = int(rng.choice([-1, 1, 2, 3, 4, 6]))  # -1: filled
    if spec["motion"] == "rolling":
        spec["direction"] = str(rng.choice(DIRECTIONS))
        spec["speed"] = float(rng.uniform(0.002, 0.012))  # fraction of the frame per frame
    if spec["motion"] == "spontaneous":
        spec["show_probability"] = float(rng.uniform(0.3, 0.8))
    return spec


def position(spec: dict, frame_index: int, seed: int) -> tuple[float, float] | None:
    """Where the distraction is in frame ``frame_index`` (fractions), or None when hidden."""
    motion = spec["motion"]
    if motion == "static":
        return spec["x"], spec["y"]
    if motion == "rolling":
        step = spec["speed"] * frame_index
        dx, dy = {"left": (-step, 0), "right": (step, 0), "up": (0, -step), "down": (0, step)}[
            spec["direction"]]
        return (spec["x"] + dx) % 1.0, (spec["y"] + dy) % 1.0
    if motion == "spontaneous":
        rng = np.random.default_rng([seed, frame_index, 7])
        if rng.random() >= spec["show_probability"]:
            return None
        return float(rng.uniform(0.05, 0.95)), float(rng.uniform(0.05, 0.95))
    raise ValueError(f"unknown distraction motion {motion!r}; known: {MOTIONS}")


def draw_distraction(frame: np.ndarray, spec: dict, frame_index: int, seed: int) -> np.ndarray:
    """A copy of ``frame`` (RGB uint8) with the distraction drawn for ``frame_index``."""
    pos = position(spec, frame_index, seed)
    out = frame.copy()
    if pos is None:
        return out
    h, w = frame.shape[:2]
    cx, cy = int(round(pos[0] * w)), int(round(pos[1] * h))
    color = tuple(int(c) for c in spec["color"])
    kind = spec["kind"]
    if kind == "text":
        scale = spec["size"] * h / 720.0
        thick = max(1, int(round(spec["thickness"] * h / 720.0)))
        (tw, th), _ = cv2.getTextSize(spec["text"], cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        cv2.putText(out, spec["text"], (cx - tw // 2, cy + th // 2), cv2.FONT_HERSHEY_SIMPLEX,
                    scale, color, thick, cv2.LINE_AA)
    elif kind in ("circle", "rectangle"):
        r = max(2, int(round(spec["size"] * min(h, w))))
        thick = spec["thickness"] if spec["thickness"] < 0 else max(1, int(round(spec["thickness"] * h / 720.0)))
        if kind == "circle":
            cv2.circle(out, (cx, cy), r, color, thick, cv2.LINE_AA)
        else:
            cv2.rectangle(out, (cx - r, cy - r), (cx + r, cy + r), color, thick, cv2.LINE_AA)
    else:
        raise ValueError(f"unknown distraction kind {kind!r}; known: {KINDS}")
    return out
