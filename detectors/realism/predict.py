"""Clip-level predictions: average a model's outputs over several random sequences per video.

The test-time protocol of the realism challenges: ``sampler.test_draws`` sequences per video
(seeded by the video key, so a report is reproducible), one score each, averaged. The same
routine averages pooled features for the frozen-feature baseline.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from detectors.realism.clips import Clip
from detectors.realism.dataset import sequence_tensors
from detectors.realism.sampler import SequenceSampler
from mrigan.device import autocast


@torch.no_grad()
def clip_outputs(fn: Callable[[dict[str, torch.Tensor]], torch.Tensor], clips: Sequence[Clip],
                 sampler: SequenceSampler, *, inputs: str, size: int, device: torch.device,
                 batch_size: int = 16, seed: int = 0, draws: int | None = None,
                 precision: str = "auto") -> np.ndarray:
    """``fn(batch) -> (N, ...)`` on every test sequence, averaged per clip -> ``(len(clips), ...)``."""
    jobs = []
    for c, clip in enumerate(clips):
        seqs = sampler.test_sequences(len(clip), clip.key, seed)
        for idx in seqs[: draws or len(seqs)]:
            jobs.append((c, idx))
    sums: list[np.ndarray | None] = [None] * len(clips)
    counts = np.zeros(len(clips))
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start:start + batch_size]
        items = [sequence_tensors(clips[c], idx, inputs, size) for c, idx in chunk]
        batch = {k: torch.stack([it[k] for it in items]).to(device) for k in items[0]}
        with autocast(device, precision):
            out = fn(batch)
        out = out.float().cpu().numpy()
        for (c, _), value in zip(chunk, out, strict=True):
            sums[c] = value if sums[c] is None else sums[c] + value
            counts[c] += 1
    return np.stack([s / n for s, n in zip(sums, counts, strict=True)])


def predict_clips(model: torch.nn.Module, clips: Sequence[Clip], sampler: SequenceSampler, *,
                  inputs: str, size: int, device: torch.device | None = None, batch_size: int = 16,
                  seed: int = 0, draws: int | None = None, precision: str = "auto") -> np.ndarray:
    """Predicted MOS per clip (mean over the test draws), model in eval mode."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        return clip_outputs(model, clips, sampler, inputs=inputs, size=size, device=device,
                            batch_size=batch_size, seed=seed, draws=draws, precision=precision)
    finally:
        model.train(was_training)
