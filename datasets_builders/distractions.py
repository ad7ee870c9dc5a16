"""Distractions of the MRI-GAN paper: random text or shapes drawn over a video.

A distraction is random 8-character text or a circle / rectangle with a random colour, size
and thickness, either static, rolling in one of four directions (wrapping around), or
spontaneous (jumping to a random place, shown in random frames). Positions are fractions of
the frame, and every random choice per frame comes from ``(plan seed, frame index)``, so a
fake and its original get exactly the same overlay and their SSIM map does not show it.

What is drawn is set by a ``DistractionStyle`` (YAML ``augment.distraction``). The default is
today's: one distraction per video, any RGB colour, text scale 0.6-2.5, text thickness 1-5.
``PAPER_DISTRACTIONS`` is the MRI-GAN paper's (section 3): text in one of 5 named colours (red,
blue, green, white, black), font scale 1-6 and thickness 1-3 (whole units), one or more
distractions per video. The paper does not say how many "one or more" is: the preset draws
1 to 3 (stated choice). The paper's colours apply to shapes too ("all the various options
implemented for text ... apply to shapes"); shape size and thickness keep today's ranges.
Font scale and thickness are in units at 720 px frame height (scaled with the frame).
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field

import cv2
import numpy as np

from mrigan.config import ConfigError
from mrigan.fingerprint import added_later

KINDS = ("text", "circle", "rectangle")
MOTIONS = ("static", "rolling", "spontaneous")
DIRECTIONS = ("left", "right", "up", "down")
TEXT_ALPHABET = string.ascii_letters + string.digits
#: the paper's five named colours, RGB (frames are RGB)
NAMED_COLORS = {"red": (255, 0, 0), "blue": (0, 0, 255), "green": (0, 255, 0),
                "white": (255, 255, 255), "black": (0, 0, 0)}


@dataclass(frozen=True)
class DistractionStyle:
    """What a distraction may look like (see the module doc); ranges are inclusive."""

    # (every field added after builds existed: at these defaults left out of fingerprints)
    #: named colours (NAMED_COLORS); empty: any RGB colour (today)
    colors: tuple[str, ...] = field(default=(), metadata=added_later(()))
    #: font scale range; paper: 1-6
    text_scale: tuple[float, float] = field(default=(0.6, 2.5), metadata=added_later((0.6, 2.5)))
    #: draw the font scale as a whole number (paper: True)
    whole_units: bool = field(default=False, metadata=added_later(False))
    #: paper: 1-3
    text_thickness: tuple[int, int] = field(default=(1, 5), metadata=added_later((1, 5)))
    #: distractions per distracted video; paper: "one or more"
    count: tuple[int, int] = field(default=(1, 1), metadata=added_later((1, 1)))

    def __post_init__(self) -> None:
        unknown = sorted(set(self.colors) - set(NAMED_COLORS))
        if unknown:
            raise ConfigError(f"augment.distraction.colors: unknown {unknown}; known: {sorted(NAMED_COLORS)}")
        for key, low in (("text_scale", 0.1), ("text_thickness", 1), ("count", 1)):
            lo, hi = getattr(self, key)
            if not low <= lo <= hi:
                raise ConfigError(f"augment.distraction.{key} must be [min, max] with "
                                  f"{low} <= min <= max, got {[lo, hi]}")


#: the MRI-GAN paper's distractions (section 3; see the module doc)
PAPER_DISTRACTIONS = DistractionStyle(colors=("red", "blue", "green", "white", "black"),
                                      text_scale=(1.0, 6.0), whole_units=True,
                                      text_thickness=(1, 3), count=(1, 3))


def sample_distractions(rng: np.random.Generator, style: DistractionStyle | None = None) -> list[dict]:
    """``style.count`` random distractions (one with the default style, drawn as before)."""
    style = style or DistractionStyle()
    lo, hi = style.count
    n = lo if lo == hi else int(rng.integers(lo, hi + 1))
    return [sample_distraction(rng, style) for _ in range(n)]


def sample_distraction(rng: np.random.Generator, style: DistractionStyle | None = None) -> dict:
    """A random distraction as plain JSON-able values (the default style draws exactly as
    before styles existed, so seeded plans are unchanged)."""
    style = style or DistractionStyle()
    kind = str(rng.choice(KINDS))
    if style.colors:
        color = list(NAMED_COLORS[str(rng.choice(list(style.colors)))])
    else:
        color = [int(v) for v in rng.integers(0, 256, size=3)]
    spec: dict = {
        "kind": kind,
        "color": color,
        "motion": str(rng.choice(MOTIONS)),
        "x": float(rng.uniform(0.05, 0.95)),
        "y": float(rng.uniform(0.05, 0.95)),
    }
    if kind == "text":
        spec["text"] = "".join(rng.choice(list(TEXT_ALPHABET), size=8))
        lo, hi = style.text_scale
        if style.whole_units:  # font scale at 720 px frame height
            spec["size"] = float(rng.integers(int(np.ceil(lo)), int(np.floor(hi)) + 1))
        else:
            spec["size"] = float(rng.uniform(lo, hi))
        spec["thickness"] = int(rng.integers(style.text_thickness[0], style.text_thickness[1] + 1))
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
