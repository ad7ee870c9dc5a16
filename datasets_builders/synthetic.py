"""Self-blended (real, fake) pairs from any real face image.

After Shiohara & Yamasaki (CVPR 2022, "self-blended images"): a copy of the face is jittered
(colour, sharpness, a small shift/scale) and blended back into the original through a soft,
randomly deformed face mask. The result is an exactly aligned (real, fake) pair with a known
manipulation mask, so MRI-DF style training data, demos and tests need no paired dataset.

``graded_fake`` maps a quality in [0, 1] to the artefact strength (1 = hardest to see), which
gives realism regressors a known ground truth.

``sbi_params`` draws the SBI paper's variety for training data (the MRI-DF builder's
``self_blend`` source, issue 21): several mask shapes, colour (RGB gains, brightness, hue,
saturation) and frequency (down-up sampling, blur, sharpening) jitter of the source copy, and
SBI's blend ratios (1/4, 1/2, 3/4 or full, full twice as likely). Departure from SBI: SBI draws
its masks from the convex hull of 81 facial landmarks; our crops carry no landmarks, so the
shapes come from the canonical layout of a face crop (a centred face at the builder's 1.3
margin): the face oval, the inner face (eyes to mouth), the lower face (mouth and chin, where
lip-sync and expression methods work) and a random convex polygon around the face centre.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import cv2
import numpy as np

from mrigan import perceptual
from mrigan.mri_df_format import MriDfWriter, write_manifest


@dataclass(frozen=True)
class BlendParams:
    """How a fake is made from a face crop; all sizes relative to the crop side."""

    alpha: float = 0.9  # peak opacity of the jittered copy inside the mask
    mask_scale: float = 0.42  # ellipse half-axes as a fraction of the crop (before deformation)
    mask_deform: float = 0.08  # amplitude of the random boundary deformation
    boundary_blur: float = 0.03  # Gaussian sigma of the mask edge
    color_shift: float = 0.08  # per-channel gain jitter of the copy
    brightness: float = 8.0  # additive brightness jitter (0..255 scale)
    sharpness: float = 1.2  # Gaussian blur sigma (>0) of the copy, in pixels at 256 px
    shift: float = 0.01  # translation of the copy
    scale: float = 0.02  # scale jitter of the copy
    mask_shape: str = "ellipse"  # ellipse | inner | lower | polygon (MASK_SHAPES)
    hue_shift: float = 0.0  # hue rotation of the copy, degrees
    saturation: float = 0.0  # relative saturation change of the copy (0.2: +20%)
    downscale: float = 1.0  # the copy is resized to this fraction and back (frequency jitter)
    sharpen: float = 0.0  # unsharp-mask amount applied to the copy (0: none)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class SelfBlend:
    real: np.ndarray  # HxWx3 uint8
    fake: np.ndarray  # HxWx3 uint8, pixel-aligned with real
    mask: np.ndarray  # HxW float32 in [0, 1], the blend weights actually used
    params: BlendParams


#: Mask shapes of :class:`BlendParams` (module doc).
MASK_SHAPES = ("ellipse", "inner", "lower", "polygon")

#: SBI's blend ratios: the copy's peak opacity, full opacity twice as likely.
SBI_BLEND_RATIOS = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)


def sbi_params(rng: np.random.Generator) -> BlendParams:
    """The SBI paper's variety for training self-blends (module doc)."""
    return BlendParams(
        alpha=float(rng.choice(SBI_BLEND_RATIOS)),
        mask_scale=float(rng.uniform(0.32, 0.48)),
        mask_deform=float(rng.uniform(0.0, 0.15)),
        boundary_blur=float(rng.uniform(0.01, 0.08)),
        color_shift=float(rng.uniform(0.0, 0.15)),
        brightness=float(rng.uniform(-20, 20)),
        sharpness=float(rng.uniform(0.0, 2.0)) if rng.random() < 0.5 else 0.0,
        shift=float(rng.uniform(0.0, 0.03)),
        scale=float(rng.uniform(0.0, 0.05)),
        mask_shape=str(rng.choice(MASK_SHAPES)),
        hue_shift=float(rng.uniform(-10, 10)),
        saturation=float(rng.uniform(-0.3, 0.3)),
        downscale=float(rng.uniform(0.4, 0.9)) if rng.random() < 0.3 else 1.0,
        sharpen=float(rng.uniform(0.3, 1.0)) if rng.random() < 0.3 else 0.0,
    )


def random_params(rng: np.random.Generator) -> BlendParams:
    """A random artefact mix in the ranges used for training data."""
    return BlendParams(
        alpha=float(rng.uniform(0.6, 1.0)),
        mask_scale=float(rng.uniform(0.34, 0.48)),
        mask_deform=float(rng.uniform(0.0, 0.12)),
        boundary_blur=float(rng.uniform(0.01, 0.06)),
        color_shift=float(rng.uniform(0.03, 0.15)),
        brightness=float(rng.uniform(-15, 15)),
        sharpness=float(rng.uniform(0.6, 2.5)),
        shift=float(rng.uniform(0.0, 0.03)),
        scale=float(rng.uniform(0.0, 0.05)),
    )


def graded_params(quality: float, rng: np.random.Generator) -> BlendParams:
    """Artefacts that shrink monotonically as ``quality`` goes from 0 (crude) to 1 (subtle)."""
    if not 0.0 <= quality <= 1.0:
        raise ValueError(f"quality must be in [0, 1], got {quality}")
    bad = 1.0 - quality
    jitter = lambda s: float(rng.uniform(1 - s, 1 + s))  # noqa: E731
    return BlendParams(
        alpha=0.35 + 0.65 * bad * jitter(0.1) if bad > 0 else 0.35,
        mask_scale=float(rng.uniform(0.36, 0.46)),
        mask_deform=0.02 + 0.1 * bad,
        boundary_blur=0.07 - 0.06 * bad,
        color_shift=0.02 + 0.25 * bad * jitter(0.15),
        brightness=float(rng.choice([-1, 1])) * (2 + 25 * bad),
        sharpness=0.4 + 3.0 * bad * jitter(0.15),
        shift=0.005 + 0.04 * bad,
        scale=0.005 + 0.06 * bad,
    )


#: (centre y, centre x, half-height, half-width) of each elliptic shape, as fractions of the
#: crop side (``ry``/``rx`` multiply ``mask_scale``): the face oval, the inner face from the eyes
#: to the mouth, the lower face (mouth and chin).
_SHAPE_BOXES = {"ellipse": (0.5, 0.5, 1.05, 0.85), "inner": (0.52, 0.5, 0.72, 0.75),
                "lower": (0.66, 0.5, 0.5, 0.72)}


def _polygon_mask(h: int, w: int, p: BlendParams, rng: np.random.Generator) -> np.ndarray:
    """The convex hull of 8-12 random points around the face centre (SBI-like hull shapes)."""
    n = int(rng.integers(8, 13))
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radius = p.mask_scale * rng.uniform(0.7, 1.1, n)
    cy, cx = 0.52 + rng.uniform(-0.04, 0.04), 0.5 + rng.uniform(-0.04, 0.04)
    pts = np.stack([(cx + radius * 0.85 * np.cos(angles)) * w,
                    (cy + radius * 1.05 * np.sin(angles)) * h], 1).astype(np.float32)
    mask = np.zeros((h, w), np.float32)
    cv2.fillConvexPoly(mask, cv2.convexHull(pts).astype(np.int32), 1.0)
    return mask


def _blend_mask(h: int, w: int, p: BlendParams, rng: np.random.Generator) -> np.ndarray:
    if p.mask_shape not in MASK_SHAPES:
        raise ValueError(f"unknown mask_shape {p.mask_shape!r}; known: {', '.join(MASK_SHAPES)}")
    if p.mask_shape == "polygon":
        mask = _polygon_mask(h, w, p, rng)
        sigma = max(p.boundary_blur * max(h, w), 0.5)
        return cv2.GaussianBlur(mask, (0, 0), sigma)
    return _deformed_ellipse(h, w, p, rng, *_SHAPE_BOXES[p.mask_shape])


def _deformed_ellipse(h: int, w: int, p: BlendParams, rng: np.random.Generator,
                      fy: float = 0.5, fx: float = 0.5, ky: float = 1.05,
                      kx: float = 0.85) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy = h * (fy + rng.uniform(-0.03, 0.03))
    cx = w * (fx + rng.uniform(-0.03, 0.03))
    ry, rx = p.mask_scale * h * ky, p.mask_scale * w * kx
    theta = np.arctan2((yy - cy) / ry, (xx - cx) / rx)
    wobble = np.zeros_like(theta)
    for k in range(2, 6):  # a few random low-frequency harmonics deform the boundary
        wobble += rng.normal(0, p.mask_deform / k) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    rad = np.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2)
    mask = (rad <= 1.0 + wobble).astype(np.float32)
    sigma = max(p.boundary_blur * max(h, w), 0.5)
    return cv2.GaussianBlur(mask, (0, 0), sigma)


def _jittered_copy(face: np.ndarray, p: BlendParams, rng: np.random.Generator) -> np.ndarray:
    h, w = face.shape[:2]
    src = face.astype(np.float32)
    sigma = p.sharpness * max(h, w) / 256.0
    if sigma > 0.05:
        src = cv2.GaussianBlur(src, (0, 0), sigma)
    if p.downscale < 1.0:  # frequency jitter: lose detail as a lower-resolution source would
        small = (max(4, round(w * p.downscale)), max(4, round(h * p.downscale)))
        src = cv2.resize(cv2.resize(src, small, interpolation=cv2.INTER_AREA), (w, h),
                         interpolation=cv2.INTER_LINEAR)
    if p.sharpen > 0:
        src = cv2.addWeighted(src, 1 + p.sharpen, cv2.GaussianBlur(src, (0, 0), 1.0),
                              -p.sharpen, 0)
    gains = 1.0 + rng.uniform(-p.color_shift, p.color_shift, size=3)
    src = src * gains[None, None, :].astype(np.float32) + p.brightness
    if p.hue_shift or p.saturation:
        hsv = cv2.cvtColor(np.clip(src, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV)
        hsv = hsv.astype(np.float32)
        hsv[..., 0] = (hsv[..., 0] + p.hue_shift / 2.0) % 180  # OpenCV hue: 0..180
        hsv[..., 1] = np.clip(hsv[..., 1] * (1 + p.saturation), 0, 255)
        src = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    s = 1.0 + rng.uniform(-p.scale, p.scale)
    tx, ty = rng.uniform(-p.shift, p.shift, size=2) * np.array([w, h])
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 0.0, s)
    m[:, 2] += (tx, ty)
    return cv2.warpAffine(src, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def self_blend(
    face: np.ndarray,
    rng: np.random.Generator | int | None = None,
    params: BlendParams | None = None,
) -> SelfBlend:
    """Make a fake from ``face`` (HxWx3 uint8). Deterministic for a given seed and params."""
    face = np.asarray(face)
    if face.ndim != 3 or face.shape[2] != 3 or face.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 face image, got {face.shape} {face.dtype}")
    if min(face.shape[:2]) < 16:
        raise ValueError(f"face image of {face.shape[:2]} is too small to blend (min 16 px)")
    rng = np.random.default_rng(rng)
    p = params if params is not None else random_params(rng)
    h, w = face.shape[:2]
    mask = _blend_mask(h, w, p, rng) * p.alpha
    copy = _jittered_copy(face, p, rng)
    fake = mask[..., None] * copy + (1.0 - mask[..., None]) * face.astype(np.float32)
    fake = np.clip(np.rint(fake), 0, 255).astype(np.uint8)
    return SelfBlend(real=face, fake=fake, mask=mask.astype(np.float32), params=p)


def graded_fake(face: np.ndarray, quality: float, rng: np.random.Generator | int | None = None) -> SelfBlend:
    """A fake whose artefact strength is set by ``quality`` in [0, 1] (1 = most realistic)."""
    rng = np.random.default_rng(rng)
    return self_blend(face, rng, graded_params(quality, rng))


def quality_to_mos(quality: float) -> float:
    """The score scale of realism benchmarks: quality 0 -> MOS 1, quality 1 -> MOS 5."""
    return 1.0 + 4.0 * float(quality)


def demo_faces(size: int = 128) -> list[np.ndarray]:
    """Real face crops from images that ship inside installed packages (no download).

    scikit-image's astronaut (Eileen Collins, public domain) gives the face; mirrored,
    shifted, rotated and re-lit variants give more samples with distinct pixels.
    """
    from skimage import data

    img = data.astronaut()
    box = (40, 145, 220, 325)  # y0, x0, y1, x1 around the face, square
    crops = []
    for dy, dx, ang, gain in [(0, 0, 0, 1.0), (-8, 6, 5, 0.9), (6, -6, -6, 1.1), (10, 10, 10, 0.95),
                              (-10, -4, -10, 1.05), (4, 12, 3, 0.85), (-4, -12, -3, 1.15),
                              (12, -10, 8, 1.0)]:
        y0, x0, y1, x1 = box[0] + dy, box[1] + dx, box[2] + dy, box[3] + dx
        crop = img[y0:y1, x0:x1].astype(np.float32) * gain
        c = (crop.shape[1] / 2, crop.shape[0] / 2)
        crop = cv2.warpAffine(crop, cv2.getRotationMatrix2D(c, ang, 1.0), crop.shape[1::-1],
                              borderMode=cv2.BORDER_REFLECT)
        crop = cv2.resize(np.clip(crop, 0, 255).astype(np.uint8), (size, size),
                          interpolation=cv2.INTER_AREA)
        crops.append(crop)
        crops.append(crop[:, ::-1].copy())
    return crops


def _extra_face(base: np.ndarray, k: int) -> np.ndarray:
    """A further distinct face variant (re-lit, shifted) when more than 16 faces are asked for."""
    rng = np.random.default_rng(1000 + k)
    h, w = base.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), float(rng.uniform(-12, 12)), float(rng.uniform(0.92, 1.08)))
    m[:, 2] += rng.uniform(-0.05, 0.05, size=2) * (w, h)
    out = cv2.warpAffine(base.astype(np.float32), m, (w, h), borderMode=cv2.BORDER_REFLECT)
    out = out * rng.uniform(0.85, 1.15, size=3).astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def write_synthetic_mri_df(out_dir, *, n_faces: int = 16, size: int = 64, fakes_per_face: int = 1,
                           seed: int = 0, val_fraction: float = 0.25,
                           mri_metric: str = perceptual.DEFAULT_METRIC):
    """Write a small MRI-DF dataset (same manifest format as the real builder) and return its root.

    Each of ``n_faces`` demo faces is one identity: its real crop with a black MRI and
    ``fakes_per_face`` self-blended fakes with ``MRI = metric_map(real, fake, metric=mri_metric)``
    (``ssim``: the paper's ``clip(1 - SSIM)``). Identities, not
    frames, are split into ``train`` / ``val`` so no face leaks across splits. Deterministic for
    ``seed``. Used by GAN and detector tests and by the demo (no download needed).
    """
    from pathlib import Path

    if n_faces < 1 or fakes_per_face < 0:
        raise ValueError(f"need n_faces >= 1 and fakes_per_face >= 0, got {n_faces}, {fakes_per_face}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    base = demo_faces(size)
    faces = [base[i] if i < len(base) else _extra_face(base[i % len(base)], i) for i in range(n_faces)]
    rng = np.random.default_rng(seed)
    n_val = int(round(val_fraction * n_faces))
    if val_fraction > 0 and n_faces >= 2:
        n_val = min(max(n_val, 1), n_faces - 1)
    val_ids = set(rng.permutation(n_faces)[:n_val].tolist())
    perceptual.get(mri_metric)  # an unknown metric fails before anything is written
    writer = MriDfWriter(root, mri_metric=mri_metric)
    rows = []
    for i, face in enumerate(faces):
        ident = f"face{i:03d}"
        split = "val" if i in val_ids else "train"
        common = {"split": split, "identity": ident, "source": "synthetic"}
        rows.append(writer.write(face=face, label="real", video=f"{ident}_real",
                                 method="original", **common))
        for k in range(fakes_per_face):
            blend = self_blend(face, rng)
            mri = perceptual.metric_map_np(blend.real, blend.fake, metric=mri_metric)
            rows.append(writer.write(face=blend.fake, mri=mri,
                                     label="fake", video=f"{ident}_fake{k}", method="self_blend",
                                     **common))
    write_manifest(root, rows)
    return root
