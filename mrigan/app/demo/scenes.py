"""Synthetic scenes from the two public-domain portraits shipped inside installed packages
(scikit-image's astronaut, Eileen Collins; matplotlib's Grace Hopper): a random camera (pose,
scale, position, lighting, mirror) renders a real frame, and ``blend_into`` makes its fake (the
face square self-blended, ``datasets_builders.synthetic.self_blend``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from datasets_builders.faces import find_faces, square_box
from datasets_builders.synthetic import graded_params, self_blend
from mrigan.app.demo.config import DemoSceneConfig
from mrigan.fileio import read_image


@dataclass(frozen=True)
class Photo:
    name: str
    image: np.ndarray  # RGB uint8
    face: tuple[float, float, float]  # face square: centre x, centre y, side (photo pixels)


def packaged_photos(detector) -> list[Photo]:
    """The public-domain portraits shipped inside scikit-image and matplotlib, with the face
    square found by MTCNN (so no coordinates are hard-coded)."""
    import matplotlib.cbook
    from skimage import data

    photos = [("collins", data.astronaut()),
              ("hopper", read_image(matplotlib.cbook.get_sample_data("grace_hopper.jpg",
                                                                     asfileobj=False)))]
    out = []
    for name, img in photos:
        boxes = find_faces(lambda img=img: [(0, img)], detector).boxes[0]
        if not boxes:
            raise RuntimeError(f"no face found in the packaged photo {name!r}")
        x0, y0, x1, y1 = square_box(boxes[0], 1.3)
        out.append(Photo(name, img, ((x0 + x1) / 2, (y0 + y1) / 2, float(x1 - x0))))
    return out


def scene_params(rng: np.random.Generator, cfg: DemoSceneConfig) -> dict[str, Any]:
    """A random camera: face size and position in the frame, roll, mirror, lighting."""
    return {"face": float(rng.uniform(*cfg.face_fraction)),
            "cx": float(rng.uniform(0.38, 0.62)), "cy": float(rng.uniform(0.38, 0.62)),
            "angle": float(rng.uniform(-12, 12)), "flip": bool(rng.random() < 0.5),
            "gain": [float(g) for g in rng.uniform(0.85, 1.15, size=3)],
            "offset": float(rng.uniform(-12, 12))}


def render_scene(photo: Photo, p: dict[str, Any], size: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The frame a camera with parameters ``p`` sees, and the face square in it."""
    import cv2

    img = photo.image
    cx, cy, side = photo.face
    if p["flip"]:
        img, cx = img[:, ::-1], img.shape[1] - 1 - cx
    scale = p["face"] * size / side
    m = cv2.getRotationMatrix2D((cx, cy), p["angle"], scale)
    tx, ty = p["cx"] * size, p["cy"] * size
    m[:, 2] += (tx - cx, ty - cy)
    frame = cv2.warpAffine(np.ascontiguousarray(img), m, (size, size), flags=cv2.INTER_AREA,
                           borderMode=cv2.BORDER_REFLECT)
    frame = frame.astype(np.float32) * np.asarray(p["gain"], np.float32) + p["offset"]
    half = p["face"] * size / 2
    square = (int(round(tx - half)), int(round(ty - half)), int(round(tx + half)), int(round(ty + half)))
    return np.clip(np.rint(frame), 0, 255).astype(np.uint8), square


def blend_into(frame: np.ndarray, square: tuple[int, int, int, int], seed: int,
               quality: tuple[float, float] = (0.0, 0.4)) -> np.ndarray:
    """A fake frame: the face square self-blended (a jittered copy through a soft, deformed face
    mask) with artefacts of a quality drawn in ``quality`` (``graded_params``: 0 crude, 1 subtle)."""
    h, w = frame.shape[:2]
    x0, y0, x1, y1 = max(square[0], 0), max(square[1], 0), min(square[2], w), min(square[3], h)
    rng = np.random.default_rng(seed)
    params = graded_params(float(rng.uniform(*quality)), rng)
    fake = frame.copy()
    fake[y0:y1, x0:x1] = self_blend(frame[y0:y1, x0:x1], rng, params).fake
    return fake
