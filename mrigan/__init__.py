"""mrigan: perceptual artifact maps (MRI-GAN) for deepfake detection and realism rating.

Core API::

    from mrigan import perceptual
    mri = perceptual.mri_map(real, fake, data_range=1.0)     # (N, C, H, W) in [0, 1]

Heavier entry points (``MRIGenerator``, ``analyze``, ``artifact_map``) are imported lazily so
that ``import mrigan`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "MRIGenerator": ("mrigan.inference", "MRIGenerator"),
    "analyze": ("mrigan.app.analysis", "analyze"),
    "artifact_map": ("mrigan.app.analysis", "artifact_map"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'mrigan' has no attribute {name!r}")


__all__ = ["MRIGenerator", "analyze", "artifact_map", "__version__"]
