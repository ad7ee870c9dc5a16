"""Grad-CAM heat maps of a frame detector's decision (Selvaraju et al., ICCV 2017).

The map answers "which part of this face made the detector say fake": the last feature map
``A`` of the backbone is weighted by the spatial mean of d logit / d A per channel, summed,
rectified and upsampled to the input size. For the MRI detector the input is the MRI, which is
pixel-aligned with the face, so the same map is drawn over the face crop.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from detectors.model import FrameDetector


def gradcam(model: FrameDetector, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(heat maps (N, H, W) in [0, 1], logits (N,))`` for model inputs ``images``.

    Each map is divided by its own maximum; a map that is zero everywhere (no positive evidence
    for "fake") stays zero. The model is put in eval mode for the call and restored after.
    """
    if getattr(model, "temporal", False):
        raise TypeError("Grad-CAM here explains frame detectors; score the clip's frames with "
                        "the frame model instead")
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            x = images.detach().float().requires_grad_(False)
            fmap = model.backbone.features(x)
            fmap.retain_grad()
            logits = model.head(fmap)
            logits.sum().backward()
            weights = fmap.grad.mean(dim=(2, 3), keepdim=True)
            cam = F.relu((weights * fmap).sum(dim=1, keepdim=True)).detach()
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    cam = F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    peak = cam.flatten(1).amax(dim=1).clamp_min(1e-12)[:, None, None]
    return cam / peak, logits.detach()


def overlay(face: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Face (HxWx3 uint8) with a heat map (HxW in [0, 1]) blended on top (JET colours)."""
    import cv2

    if heat.shape != face.shape[:2]:
        heat = cv2.resize(heat.astype(np.float32), face.shape[1::-1])
    colour = cv2.applyColorMap(np.uint8(np.clip(heat, 0, 1) * 255), cv2.COLORMAP_JET)[..., ::-1]
    return np.clip((1 - alpha) * face + alpha * colour, 0, 255).astype(np.uint8)


def explain_faces(detector, faces=None, mris=None) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM for a loaded :class:`detectors.inference.Detector` on face crops (uint8 HxWx3)
    or, for an MRI detector, their MRIs. Returns ``(heat maps (N, S, S) in [0, 1],
    P(fake) (N,))`` at the detector's input size ``S``; :func:`overlay` resizes a map onto
    its face."""
    images = mris if detector.input_name == "mri" else faces
    if images is None:
        raise ValueError(f"this is a {detector.input_name} detector: pass "
                         f"{'mris' if detector.input_name == 'mri' else 'faces'}=...")
    x = detector._batch(images).to(detector.device)
    heat, logits = gradcam(detector.model, x)
    return heat.cpu().numpy(), torch.sigmoid(logits).cpu().numpy().astype(np.float64)
