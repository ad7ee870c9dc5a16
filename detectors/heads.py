"""Classifier heads on backbone features: the paper's MLP head and a temporal LSTM head.

Both give one logit per input (positive = fake); the sigmoid is applied by the caller
(``torch.sigmoid``) so the loss can work on logits, which is numerically safer.
"""

from __future__ import annotations

import torch
from torch import nn

from mrigan.registry import Registry

HEADS = Registry("head")


@HEADS.register("paper")
class PaperHead(nn.Module):
    """The MRI-GAN paper's head: adaptive average pool, Linear(F, 128), Dropout(0.5), ReLU,
    Linear(128, 1).

    Accepts the backbone's spatial map ``(N, F, h, w)`` (pooled here, as in the paper) or an
    already pooled ``(N, F)`` vector, and returns ``(N,)`` logits.
    """

    def __init__(self, feature_dim: int, hidden: int = 128, dropout: float = 0.5) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(feature_dim, hidden)
        self.dropout = nn.Dropout(dropout)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(hidden, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.ndim == 4:
            features = torch.flatten(self.pool(features), 1)
        return self.fc2(self.relu(self.dropout(self.fc1(features)))).squeeze(1)


@HEADS.register("linear")
class LinearHead(nn.Module):
    """Pool + one linear layer: a lighter baseline for small data."""

    def __init__(self, feature_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(feature_dim, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.ndim == 4:
            features = features.mean(dim=(2, 3))
        return self.fc(self.dropout(features)).squeeze(1)


class TemporalHead(nn.Module):
    """A bidirectional LSTM over a face track's per-frame feature vectors -> one clip logit.

    ``forward(features, mask)``: ``features`` ``(B, T, F)``, ``mask`` ``(B, T)`` bool with
    True on real (not padded) steps; clips shorter than ``T`` are packed so padding never enters
    the recurrence. The outputs of both directions are averaged over the valid steps (mean
    pooling is steadier than the last state when tracks are short), then a small MLP.
    """

    def __init__(self, feature_dim: int, hidden: int = 128, layers: int = 1,
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.lstm = nn.LSTM(feature_dim, hidden, num_layers=layers, batch_first=True,
                            bidirectional=True, dropout=dropout if layers > 1 else 0.0)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * hidden, 1))

    def forward(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, t, _ = features.shape
        if mask is None:
            mask = torch.ones(b, t, dtype=torch.bool, device=features.device)
        lengths = mask.sum(1)
        if (lengths == 0).any():
            raise ValueError("every clip needs at least one valid frame")
        packed = nn.utils.rnn.pack_padded_sequence(features.float(), lengths.cpu(),
                                                   batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=t)
        pooled = (out * mask.unsqueeze(-1)).sum(1) / lengths.unsqueeze(-1).to(out.dtype)
        return self.classifier(pooled).squeeze(1)
