"""Readers of real deepfake datasets, face extraction, augmentation plans, the MRI-DF builder
and the labelled face-set builder.

``datasets_builders.build_mri_df(config)``, ``build_face_set(config)`` and their configs are imported lazily so that
``import datasets_builders`` stays cheap (no torch/MTCNN until a build starts).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "build_mri_df": "datasets_builders.mri_df",
    "merge_shards": "datasets_builders.mri_df",
    "BuildConfig": "datasets_builders.mri_df",
    "BuildSourceConfig": "datasets_builders.mri_df",
    "write_synthetic_mri_df": "datasets_builders.synthetic",
    "build_face_set": "datasets_builders.build_faces",
    "merge_face_shards": "datasets_builders.build_faces",
    "BuildFaceSetConfig": "datasets_builders.build_faces",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'datasets_builders' has no attribute {name!r}")


__all__ = sorted(_LAZY)
