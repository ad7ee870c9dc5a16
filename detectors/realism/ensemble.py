"""Weighted averages of several realism models' predictions (e.g. 0.75 plain + 0.25 MRI).

The weights are given, or chosen on validation predictions by :func:`fit_weights` (a grid over
the simplex): never on a test set, or the reported score is optimistic.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from detectors.realism import metrics


def normalise_weights(weights: Sequence[float], n_models: int) -> np.ndarray:
    w = np.asarray(weights if len(weights) else [1.0] * n_models, dtype=np.float64)
    if w.size != n_models:
        raise ValueError(f"{w.size} ensemble weight(s) for {n_models} model(s)")
    if (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"ensemble weights must be >= 0 with a positive sum, got {list(w)}")
    return w / w.sum()


def weighted_average(predictions: Sequence[Sequence[float]], weights: Sequence[float] = ()) -> np.ndarray:
    """``sum_k w_k * pred_k / sum_k w_k`` per video; equal weights when none are given."""
    preds = np.asarray([np.asarray(p, dtype=np.float64) for p in predictions])
    if preds.ndim != 2:
        raise ValueError("predictions must be one equal-length vector per model")
    return normalise_weights(weights, len(preds)) @ preds


def fit_weights(predictions: Sequence[Sequence[float]], y_true: Sequence[float], step: float = 0.05,
                metric: str = "score") -> tuple[np.ndarray, float]:
    """Weights on a ``step`` grid of the simplex that maximise ``metric`` (validation data)."""
    n = len(predictions)
    ticks = int(round(1.0 / step))
    best_w, best_v = None, -np.inf
    for combo in itertools.product(range(ticks + 1), repeat=n - 1):
        if sum(combo) > ticks:
            continue
        w = np.array(list(combo) + [ticks - sum(combo)], dtype=np.float64) / ticks
        value = metrics.mos_report(y_true, weighted_average(predictions, w))[metric]
        if metric in ("rmse", "mae"):
            value = -value
        if value > best_v:
            best_w, best_v = w, value
    return best_w, float(best_v if metric not in ("rmse", "mae") else -best_v)
