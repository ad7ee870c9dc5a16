"""LIME explanations (Ribeiro et al., KDD 2016) of a frame detector's decision, beside Grad-CAM.

The thesis (``../shared/seeds/002_39727e56c0b11144.txt``, section 7.3) checks its detectors'
decisions with LIME: the face is cut into superpixels, many copies with random superpixels
hidden are scored, and a weighted linear model over "which superpixels were kept" gives each
superpixel a signed weight (positive: pushes towards "fake"; the thesis draws those red and the
"real" ones green). Grad-CAM (:mod:`detectors.explain`) looks inside the network; LIME only
queries it, so it explains any detector, including ensembles.

Library: captum's :class:`captum.attr.Lime` (optional extra ``mrigan[lime]``). Chosen over the
``lime`` package by maintenance and fit, measured on one 128 px FF++ face, 50 superpixels,
256 samples, one CPU thread: captum 1.1 - 1.2 s, ``lime`` 0.7 - 0.9 s per face, both exactly
repeatable when seeded. ``lime`` is a little faster on CPU but its last release (0.2.0.1) is
from 2020 and it works on NumPy HxWx3 images on the CPU; captum (0.9.0) is maintained with
PyTorch, perturbs tensors on the model's device in batches and takes our superpixel mask
directly.

Settings follow the ``lime`` package's image defaults where captum differs (so the maps mean what
the thesis' maps meant): exponential kernel on the cosine distance with width 0.25, ridge
regression (alpha 1) as the interpretable model. Superpixels: SLIC on the face crop (50
segments), which for an MRI detector is pixel-aligned with its MRI, so MRI maps are explained
over the face's regions. Hidden superpixels take the superpixel's mean colour on faces (the
``lime`` default, ``hide_color=None``) and 0 on MRIs (a black MRI means "no manipulation").
The explained output is P(fake) = sigmoid(logit).

Shape: :func:`lime_map` returns an ``(H, W)`` float map at the model's input size, each pixel
holding its superpixel's weight (signed, not normalised). Deterministic for a given ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from detectors.inference import Detector
from mrigan.config import Checked, bounds

HIDE = ("mean", "zero")


@dataclass(frozen=True)
class LimeConfig(Checked):
    """LIME settings (defaults: the ``lime`` package's image defaults, 50 SLIC superpixels)."""

    n_segments: int = field(default=50, metadata=bounds(minimum=2))  # SLIC superpixels on the face
    compactness: float = 10.0  # SLIC compactness (skimage default)
    # perturbed copies scored per image
    n_samples: int = field(default=256, metadata=bounds(minimum=2))
    batch_size: int = 64  # copies per forward pass
    kernel_width: float = 0.25  # exp kernel on cosine distance (lime's default width)
    ridge_alpha: float = 1.0  # interpretable model: ridge regression (lime's default)
    # "mean" (superpixel mean colour) | "zero"; "" = mean for faces, zero for MRIs
    hide: str = field(default="", metadata=bounds(choices=("", *HIDE)))
    seed: int = 0


@dataclass(frozen=True)
class LimeMap:
    """One explanation: ``weights`` (H, W) signed per-pixel superpixel weights, ``segments``
    (H, W) superpixel ids, ``probability`` P(fake) of the unperturbed input."""

    weights: np.ndarray
    segments: np.ndarray
    probability: float


def _captum():
    try:
        from captum._utils.models.linear_model import SkLearnRidge
        from captum.attr import Lime
        from captum.attr._core.lime import get_exp_kernel_similarity_function
    except ImportError as exc:
        raise ImportError("LIME explanations need the optional captum package: "
                          "pip install 'mrigan[lime]' (or pip install captum)") from exc
    return Lime, SkLearnRidge, get_exp_kernel_similarity_function


def superpixels(image: np.ndarray, n_segments: int = 50, compactness: float = 10.0) -> np.ndarray:
    """SLIC superpixel ids ``(H, W)`` (0-based, consecutive) of an HxWx3 image."""
    from skimage.segmentation import slic

    arr = np.asarray(image)
    arr = arr.astype(np.float64) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float64)
    seg = slic(arr, n_segments=n_segments, compactness=compactness, start_label=0,
               channel_axis=-1)
    _, seg = np.unique(seg, return_inverse=True)
    return seg.reshape(arr.shape[:2]).astype(np.int64)


def _mean_baseline(image: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
    """Each pixel replaced by its superpixel's mean colour: ``(C, H, W)``."""
    flat = segments.flatten()
    n = int(flat.max()) + 1
    counts = torch.bincount(flat, minlength=n).clamp_min(1).to(image.dtype)
    out = torch.empty_like(image)
    for c in range(image.shape[0]):
        sums = torch.bincount(flat, weights=image[c].flatten(), minlength=n)
        out[c] = (sums / counts)[segments]
    return out


def lime_map(model: nn.Module, image: torch.Tensor, *, segments: np.ndarray,
             hide: str = "mean", cfg: LimeConfig = LimeConfig()) -> LimeMap:
    """LIME of ``model`` (images -> logits) on one ``(C, H, W)`` input in [0, 1].

    ``segments``: ``(H, W)`` superpixel ids (:func:`superpixels` of the face); ``hide``: what a
    hidden superpixel becomes ("mean" colour or "zero"). The model is put in eval mode for the
    call and restored after.
    """
    lime_cls, ridge, kernel = _captum()
    if image.ndim != 3:
        raise ValueError(f"expected one (C, H, W) image, got shape {tuple(image.shape)}")
    if tuple(segments.shape) != tuple(image.shape[-2:]):
        raise ValueError(f"segments {segments.shape} do not match the image {tuple(image.shape)}")
    if hide not in HIDE:
        raise ValueError(f"hide must be one of {HIDE}, got {hide!r}")
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    x = image.detach().float().to(device)
    seg = torch.as_tensor(segments, dtype=torch.long, device=device)
    baseline = _mean_baseline(x, seg) if hide == "mean" else torch.zeros_like(x)
    was_training = model.training
    model.eval()

    def forward(batch: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(model(batch).float())

    try:
        explainer = lime_cls(forward, interpretable_model=ridge(alpha=cfg.ridge_alpha),
                             similarity_func=kernel("cosine", cfg.kernel_width))
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(cfg.seed)  # captum samples the perturbations with torch's RNG
        try:
            with torch.no_grad():
                attr = explainer.attribute(
                    x[None], baselines=baseline[None], feature_mask=seg[None, None].expand_as(x[None]),
                    n_samples=cfg.n_samples, perturbations_per_eval=cfg.batch_size,
                    return_input_shape=True, show_progress=False)
                prob = float(forward(x[None])[0])
        finally:
            torch.random.set_rng_state(generator_state)
    finally:
        model.train(was_training)
    weights = attr[0, 0].double().cpu().numpy()
    return LimeMap(weights=weights, segments=np.asarray(segments), probability=prob)


def lime_faces(detector: Detector, faces=None, mris=None,
               cfg: LimeConfig = LimeConfig()) -> tuple[np.ndarray, np.ndarray]:
    """LIME for a loaded :class:`detectors.inference.Detector` on face crops (uint8 HxWx3) or,
    for an MRI detector, their MRIs (with the faces, when given, for the superpixels).

    Returns ``(maps (N, S, S) float64 signed weights, P(fake) (N,))`` at the detector's input
    size ``S``, like :func:`detectors.explain.explain_faces` returns Grad-CAM maps.
    """
    is_mri = detector.input_name == "mri"
    images = mris if is_mri else faces
    if images is None:
        raise ValueError(f"this is a {detector.input_name} detector: pass "
                         f"{'mris' if is_mri else 'faces'}=...")
    x = detector._batch(images)
    seg_source = detector._batch(faces) if faces is not None else x
    hide = cfg.hide or ("zero" if is_mri else "mean")
    maps, probs = [], []
    for i in range(len(x)):
        segments = superpixels(seg_source[i].permute(1, 2, 0).numpy(), cfg.n_segments,
                               cfg.compactness)
        res = lime_map(detector.model, x[i], segments=segments, hide=hide, cfg=cfg)
        maps.append(res.weights)
        probs.append(res.probability)
    return np.stack(maps), np.asarray(probs, dtype=np.float64)


def lime_overlay(face: np.ndarray, weights: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """Face (HxWx3 uint8) with a signed LIME map (any HxW, e.g. :func:`lime_faces` output)
    blended on top as the thesis draws it: superpixels pushing towards "fake" in red, towards
    "real" in green, opacity proportional to ``|weight| / max |weight|`` (a map of zeros leaves
    the face unchanged)."""
    import cv2

    w = np.asarray(weights, dtype=np.float32)
    if w.shape != face.shape[:2]:
        w = cv2.resize(w, face.shape[1::-1], interpolation=cv2.INTER_NEAREST)
    peak = float(np.abs(w).max())
    strength = np.abs(w) / peak if peak > 0 else np.zeros_like(w)
    colour = np.zeros(face.shape, dtype=np.float32)
    colour[w > 0] = (255.0, 0.0, 0.0)
    colour[w < 0] = (0.0, 200.0, 0.0)
    a = (alpha * strength)[..., None]
    return np.clip((1 - a) * face + a * colour, 0, 255).round().astype(np.uint8)
