"""Which frames of a video a realism model looks at.

A video's realism is rated as a whole, but a model sees a short sequence: ``num_frames``
consecutive sampled frames (``stride`` apart) from a random start. Training draws a new start
every epoch (cheap temporal augmentation); testing averages the scores of ``test_draws``
random sequences, seeded by the video's key so a report is reproducible run to run.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np

from mrigan.config import Checked, bounds


@dataclass(frozen=True)
class SequenceSampler(Checked):
    """Also the sampler's config section (``sampler.num_frames`` etc. in YAML); its ranges are
    ``bounds`` metadata, checked from YAML and when built directly."""

    num_frames: int = field(default=5, metadata=bounds(minimum=1))
    #: 1 = consecutive frames of the (already subsampled) frame list
    stride: int = field(default=1, metadata=bounds(minimum=1))
    test_draws: int = field(default=10, metadata=bounds(minimum=1))

    @property
    def span(self) -> int:
        return (self.num_frames - 1) * self.stride + 1

    def sample(self, n_available: int, rng: np.random.Generator) -> np.ndarray:
        """Indices of one sequence. Shorter videos shrink the stride, then repeat the last frame,
        so every video gives exactly ``num_frames`` indices."""
        if n_available < 1:
            raise ValueError("cannot sample a sequence from a video with no frame")
        stride = self.stride
        while stride > 1 and (self.num_frames - 1) * stride + 1 > n_available:
            stride -= 1
        span = (self.num_frames - 1) * stride + 1
        start = int(rng.integers(0, max(n_available - span, 0) + 1))
        idx = start + stride * np.arange(self.num_frames)
        return np.minimum(idx, n_available - 1)

    def test_sequences(self, n_available: int, key: str, seed: int = 0) -> list[np.ndarray]:
        """``test_draws`` sequences, the same for the same video key and seed."""
        rng = np.random.default_rng([seed, zlib.crc32(key.encode("utf-8"))])
        return [self.sample(n_available, rng) for _ in range(self.test_draws)]
