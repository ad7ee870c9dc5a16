"""Torch side of the clips: frame sequences as ``(T, C, H, W)`` float tensors in [0, 1].

``INPUTS`` are what a model looks at: ``plain`` face crops, ``mri`` maps, or ``fused`` (both).
Training draws one random sequence per clip and epoch (seeded by seed, epoch and index, so a
run is reproducible with any number of workers); evaluation asks for explicit frame indices.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from detectors.realism.clips import Clip, load_face, load_mri
from detectors.realism.sampler import SequenceSampler
from mrigan.config import ConfigError

INPUTS = ("plain", "mri", "fused")


def needs_plain(inputs: str) -> bool:
    return inputs in ("plain", "fused")


def needs_mri(inputs: str) -> bool:
    return inputs in ("mri", "fused")


def check_inputs(inputs: str) -> str:
    if inputs not in INPUTS:
        raise ConfigError(f"unknown realism input {inputs!r}; known: {', '.join(INPUTS)}")
    return inputs


def _stack(frames: list[np.ndarray]) -> torch.Tensor:
    arr = np.stack(frames)
    t = torch.from_numpy(np.ascontiguousarray(arr))
    t = t.float() / 255.0 if arr.dtype == np.uint8 else t.float()
    return t.permute(0, 3, 1, 2).contiguous()


def sequence_tensors(clip: Clip, indices: Sequence[int], inputs: str, size: int,
                     flip: bool = False) -> dict[str, torch.Tensor]:
    """``{"plain": (T,3,H,W)}`` and/or ``{"mri": (T,3,H,W)}`` for the frames at ``indices``."""
    out: dict[str, torch.Tensor] = {}
    if needs_plain(inputs):
        out["plain"] = _stack([load_face(clip.faces[i], size) for i in indices])
    if needs_mri(inputs):
        if not clip.mris:
            raise ValueError(f"clip {clip.key!r} has no MRIs; precompute them or set "
                             "data.mri_source=generator")
        out["mri"] = _stack([load_mri(clip.mris[i], size) for i in indices])
    if flip:  # the same flip for every frame and both inputs: the pair stays aligned
        out = {k: v.flip(-1) for k, v in out.items()}
    return out


class ClipDataset(Dataset):
    """Random training sequences: item ``i`` -> ``{"plain"/"mri": (T,C,H,W), "mos", "index"}``."""

    def __init__(self, clips: Sequence[Clip], sampler: SequenceSampler, inputs: str, size: int,
                 seed: int = 0, hflip: bool = True) -> None:
        self.clips = list(clips)
        self.sampler = sampler
        self.inputs = check_inputs(inputs)
        self.size = int(size)
        self.seed = int(seed)
        self.hflip = hflip
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict:
        clip = self.clips[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        idx = self.sampler.sample(len(clip), rng)
        flip = bool(self.hflip and rng.random() < 0.5)
        item = sequence_tensors(clip, idx, self.inputs, self.size, flip=flip)
        item["mos"] = torch.tensor(clip.mos, dtype=torch.float32)
        item["index"] = index
        return item
