"""Seeded augmentation plans, saved as JSON and applied identically to a fake and its original.

The paper augments part of its training videos (noise of seven kinds, blur, rotation,
horizontal flip, rescale, brightness, contrast) and adds distractions (see
``distractions.py``). The original MRI-GAN code overwrote the videos with their augmented
versions and augmented fake and original independently, so the MRI showed the augmentation.
Here a plan is drawn once per original video from ``(seed, video id)``, written beside the
dataset as JSON, and executed on every decoded frame of the original AND of each fake made
from it: geometric and photometric parameters are fixed in the plan, and the per-frame
noise/distraction randomness is seeded by ``(plan seed, frame index)``. Nothing is written
back to the input videos.

Transforms albumentations has are albumentations transforms with degenerate (fixed) ranges;
the paper's noise types are scikit-image ``random_noise`` (albumentations has no speckle,
salt, pepper, poisson or local-variance noise).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from datasets_builders.distractions import (
    DistractionStyle,
    draw_distraction,
    sample_distractions,
)
from mrigan.fileio import atomic_write_json
from mrigan.registry import Registry

NOISE_MODES = ("gaussian", "speckle", "s&p", "pepper", "salt", "poisson", "localvar")


@dataclass(frozen=True)
class Augmentation:
    """``sample(rng) -> params``; ``build(params) -> fn(frame, frame_seed) -> frame``."""

    sample: Callable[[np.random.Generator], dict]
    build: Callable[[dict], Callable[[np.ndarray, int], np.ndarray]]


AUGMENTATIONS = Registry("augmentation")


def _albu(transform) -> Callable[[np.ndarray, int], np.ndarray]:
    return lambda frame, _seed: transform(image=frame)["image"]


def _a():
    import albumentations

    return albumentations


AUGMENTATIONS.register("noise", Augmentation(
    sample=lambda rng: {"mode": str(rng.choice(NOISE_MODES)), "var": float(rng.uniform(0.001, 0.01)),
                        "amount": float(rng.uniform(0.005, 0.03))},
    build=lambda p: lambda frame, seed: add_noise(frame, p, seed)))
AUGMENTATIONS.register("blur", Augmentation(
    sample=lambda rng: {"sigma": float(rng.uniform(0.8, 3.0))},
    build=lambda p: _albu(_a().GaussianBlur(blur_limit=0, sigma_limit=(p["sigma"], p["sigma"]), p=1.0))))
AUGMENTATIONS.register("rotation", Augmentation(
    sample=lambda rng: {"angle": float(rng.choice([-1, 1]) * rng.uniform(3, 20))},
    build=lambda p: _albu(_a().Rotate(limit=(p["angle"], p["angle"]), border_mode=cv2.BORDER_CONSTANT,
                                      p=1.0))))
AUGMENTATIONS.register("flip", Augmentation(
    sample=lambda rng: {},
    build=lambda p: _albu(_a().HorizontalFlip(p=1.0))))
AUGMENTATIONS.register("rescale", Augmentation(  # lose resolution, keep the frame size
    sample=lambda rng: {"scale": float(rng.uniform(0.3, 0.7))},
    build=lambda p: _albu(_a().Downscale(scale_range=(p["scale"], p["scale"]), p=1.0))))
AUGMENTATIONS.register("brightness", Augmentation(
    sample=lambda rng: {"delta": float(rng.choice([-1, 1]) * rng.uniform(0.1, 0.3))},
    build=lambda p: _albu(_a().RandomBrightnessContrast(brightness_limit=(p["delta"], p["delta"]),
                                                        contrast_limit=(0.0, 0.0), p=1.0))))
AUGMENTATIONS.register("contrast", Augmentation(
    sample=lambda rng: {"delta": float(rng.choice([-1, 1]) * rng.uniform(0.1, 0.4))},
    build=lambda p: _albu(_a().RandomBrightnessContrast(brightness_limit=(0.0, 0.0),
                                                        contrast_limit=(p["delta"], p["delta"]), p=1.0))))


def add_noise(frame: np.ndarray, params: dict, seed: int) -> np.ndarray:
    """scikit-image ``random_noise`` of the plan's mode; the same ``seed`` gives the same noise."""
    from skimage.util import random_noise

    mode = params["mode"]
    img = frame.astype(np.float64) / 255.0
    if mode in ("gaussian", "speckle"):
        kw = {"var": params["var"]}
    elif mode in ("s&p", "salt", "pepper"):
        kw = {"amount": params["amount"]}
    elif mode == "localvar":  # stronger noise in bright regions, like sensor shot noise
        kw = {"local_vars": 1e-4 + params["var"] * img}
    elif mode == "poisson":
        kw = {}
    else:
        raise ValueError(f"unknown noise mode {mode!r}; known: {NOISE_MODES}")
    out = random_noise(img, mode=mode, rng=seed, clip=True, **kw)
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)


def _seed_of(*parts: object) -> int:
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def make_plan(seed: int, video_id: str, *, augment_fraction: float = 0.0,
              distraction_fraction: float = 0.0, augmentations: tuple[str, ...] | None = None,
              distraction_style: DistractionStyle | None = None) -> dict:
    """The plan for one original video: a pure function of ``(seed, video_id, fractions, style)``.

    ``augment_fraction`` of the videos get one augmentation (uniform over ``augmentations``,
    default all registered), ``distraction_fraction`` get distractions, independently, drawn
    with ``distraction_style`` (default: today's, one per video, stored as one dict under
    ``distraction``; a style with more than one stores the list).
    """
    for name, value in (("augment_fraction", augment_fraction),
                        ("distraction_fraction", distraction_fraction)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}")
    names = tuple(augmentations) if augmentations else tuple(AUGMENTATIONS.names())
    plan_seed = _seed_of(seed, video_id)
    rng = np.random.default_rng(plan_seed)
    plan: dict = {"video": video_id, "seed": plan_seed, "augmentation": None, "distraction": None}
    if rng.random() < augment_fraction:
        name = str(rng.choice(names))
        plan["augmentation"] = {"name": name, **AUGMENTATIONS.get(name).sample(rng)}
    if rng.random() < distraction_fraction:
        drawn = sample_distractions(rng, distraction_style)
        plan["distraction"] = drawn[0] if len(drawn) == 1 else drawn
    return plan


def _distraction_list(plan: dict) -> list[dict]:
    dis = plan.get("distraction")
    return [] if not dis else [dis] if isinstance(dis, dict) else list(dis)


def plan_label(plan: dict | None) -> str:
    """Short description for the manifest: ``noise:speckle+text:rolling`` or ``none``."""
    if not plan:
        return "none"
    parts = []
    aug = plan.get("augmentation")
    if aug:
        parts.append(aug["name"] + (f":{aug['mode']}" if aug["name"] == "noise" else ""))
    parts += [f"{dis['kind']}:{dis['motion']}" for dis in _distraction_list(plan)]
    return "+".join(parts) or "none"


class PlanRunner:
    """Executes a plan frame by frame: ``runner(frame, frame_index) -> frame``."""

    def __init__(self, plan: dict | None) -> None:
        self.plan = plan or {}
        aug = self.plan.get("augmentation")
        self._aug = None
        if aug:
            params = {k: v for k, v in aug.items() if k != "name"}
            self._aug = AUGMENTATIONS.get(aug["name"]).build(params)
        self._distractions = _distraction_list(self.plan)
        self._seed = int(self.plan.get("seed", 0))

    @property
    def is_identity(self) -> bool:
        return self._aug is None and not self._distractions

    def __call__(self, frame: np.ndarray, frame_index: int) -> np.ndarray:
        out = frame
        if self._aug is not None:
            out = self._aug(out, _seed_of(self._seed, frame_index) % (2**32))
            out = np.ascontiguousarray(out, dtype=np.uint8)
        for k, dis in enumerate(self._distractions):  # each its own spontaneous draws
            out = draw_distraction(out, dis, frame_index, self._seed + k)
        return out


def save_plan(path: str | os.PathLike, plan: dict) -> Path:

    atomic_write_json(path, plan)
    return Path(path)


def load_plan(path: str | os.PathLike) -> dict:
    import json

    return json.loads(Path(path).read_text(encoding="utf-8"))
