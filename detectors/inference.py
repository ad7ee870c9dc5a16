"""A trained detector, loaded for scoring faces (used by ``mrigan analyze`` and evaluation).

::

    from detectors.inference import load_detector
    det = load_detector("runs/detector_mri/checkpoints/best.pt")
    p_fake = det.predict_proba(faces=crops, mris=mris)   # one probability per face

A plain detector reads ``faces``; an MRI detector reads ``mris`` (from ``MRIGenerator``).
Faces are uint8 HxWx3 arrays (or float in [0, 1]); MRIs float HxWx3 in [0, 1]; both are
resized to the detector's training size.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from detectors.config import DetectorConfig
from detectors.model import build_detector
from detectors.predict import resolve_channels_last
from detectors.train import CHECKPOINT_FORMAT
from mrigan.checkpoint import CheckpointError, load_checkpoint
from mrigan.config import from_dict
from mrigan.device import autocast, resolve_device, resolve_precision
from mrigan.pretrained import mismatch_with_installed

log = logging.getLogger(__name__)


def _strip_weights(model_cfg: dict) -> dict:
    # the checkpoint holds trained weights; do not re-read the ImageNet file it started from
    return {**model_cfg, "weights": None}


class Detector:
    """A detector in eval mode on one device, with the input conversion around it.

    ``channels_last``: ``auto`` | true | false, as in training
    (:func:`detectors.predict.resolve_channels_last`: on CUDA by default)."""

    def __init__(self, model: torch.nn.Module, config: DetectorConfig, *,
                 device: str | torch.device = "auto", precision: str = "fp32",
                 batch_size: int = 32, source: str | None = None,
                 channels_last: str | bool = "auto") -> None:
        self.device = resolve_device(device)
        self.channels_last = resolve_channels_last(self.device, channels_last)
        layout = torch.channels_last if self.channels_last else torch.preserve_format
        self.model = model.to(self.device, memory_format=layout).eval()
        self.config = config
        #: resolved inference precision (``auto`` on a CPU: fp32 on every CPU)
        self.precision = resolve_precision(self.device, precision)
        self.batch_size = batch_size
        self.source = source

    @property
    def input_name(self) -> str:
        return self.config.input.name

    @property
    def image_size(self) -> int:
        return self.config.data.image_size

    def _batch(self, images: Sequence[np.ndarray] | np.ndarray) -> torch.Tensor:
        out = []
        for i, img in enumerate(images):
            arr = np.asarray(img)
            if arr.ndim != 3 or arr.shape[-1] != 3:
                raise ValueError(f"image {i}: expected HxWx3, got shape {arr.shape}")
            t = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
            t = t.float().div_(255.0) if arr.dtype == np.uint8 else t.float().clamp_(0, 1)
            if t.shape[-2:] != (self.image_size, self.image_size):
                t = F.interpolate(t[None], size=(self.image_size, self.image_size),
                                  mode="bilinear", align_corners=False, antialias=True)[0]
            out.append(t)
        return torch.stack(out)

    @torch.no_grad()
    def predict_proba(self, faces=None, mris=None) -> np.ndarray:
        """P(fake) per face: from ``faces`` (plain detector) or ``mris`` (MRI detector)."""
        images = mris if self.input_name == "mri" else faces
        if images is None:
            raise ValueError(f"this is a {self.input_name} detector: pass "
                             f"{'mris' if self.input_name == 'mri' else 'faces'}=...")
        if len(images) == 0:
            return np.zeros(0)
        probs = []
        for start in range(0, len(images), self.batch_size):
            x = self._batch(images[start:start + self.batch_size]).to(self.device)
            if getattr(self.model, "temporal", False):
                x = x[:, None]  # each face as a one-frame clip
            elif self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(self.device, self.precision):
                probs.append(torch.sigmoid(self.model(x).float()).cpu())
        return torch.cat(probs).numpy().astype(np.float64)


def load_detector(path: str | os.PathLike, device: str | torch.device = "auto", *,
                  precision: str = "fp32", batch_size: int = 32,
                  channels_last: str | bool = "auto") -> Detector:
    """Load a ``mrigan train-detector`` checkpoint (``best.pt`` / ``last.pt``)."""
    path = Path(path)
    return detector_from_checkpoint(load_checkpoint(path), path, device, precision=precision,
                                    batch_size=batch_size, channels_last=channels_last)


def detector_from_checkpoint(state: dict, path: str | os.PathLike,
                             device: str | torch.device = "auto", *, precision: str = "fp32",
                             batch_size: int = 32,
                             channels_last: str | bool = "auto") -> Detector:
    """:func:`load_detector` on a checkpoint already read (``state``, from ``path``, which
    messages name): nothing is read again."""
    path = Path(path)
    if state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a detector checkpoint (format "
                              f"{state.get('format')!r}, expected {CHECKPOINT_FORMAT!r})")
    other = mismatch_with_installed(state.get("weights_source"))
    if other:
        log.warning("%s: %s", path, other)
    raw = dict(state["config"])
    raw["model"] = _strip_weights(raw["model"])
    cfg = from_dict(DetectorConfig, raw, where=str(path))
    model = build_detector(cfg.model)
    model.load_state_dict(state["model"])
    return Detector(model, cfg, device=device, precision=precision, batch_size=batch_size,
                    source=str(path), channels_last=channels_last)
