"""Realism-assessment metrics: PLCC, SRCC, RMSE and the DFGC-VRA challenge score.

Written in NumPy (no SciPy call) so that the tests can compare them with
``scipy.stats.pearsonr`` / ``spearmanr`` as an independent reference. Conventions follow SciPy:
SRCC is the Pearson correlation of the average ranks (ties share the mean rank), and a
correlation with a constant input is undefined (NaN), not zero, so that a collapsed model
is never reported as "uncorrelated".

The challenge's final score for one test set is ``(PLCC + SRCC) / 2``; over several test sets
it is the mean of the per-set scores (DFGC-VRA ranks teams by that average).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

ArrayLike = Sequence[float] | np.ndarray


def _pair(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} values but y_pred has {p.size}")
    if t.size < 2:
        raise ValueError(f"need at least 2 scores to correlate, got {t.size}")
    if not (np.isfinite(t).all() and np.isfinite(p).all()):
        raise ValueError("scores contain NaN or infinity")
    return t, p


def average_ranks(x: ArrayLike) -> np.ndarray:
    """Ranks 1..n, ties sharing the mean of the ranks they span (SciPy's ``method='average'``)."""
    x = np.asarray(x, dtype=np.float64).ravel()
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    # Start of each run of equal values in the sorted array.
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], x.size]  # exclusive
    mean_rank = (starts + ends + 1) / 2.0  # mean of (starts+1 .. ends)
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def _pearson(t: np.ndarray, p: np.ndarray) -> float:
    dt, dp = t - t.mean(), p - p.mean()
    denom = np.sqrt((dt * dt).sum() * (dp * dp).sum())
    if denom == 0.0:
        return float("nan")
    return float(np.clip((dt * dp).sum() / denom, -1.0, 1.0))


def plcc(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Pearson linear correlation coefficient (NaN when either side is constant)."""
    return _pearson(*_pair(y_true, y_pred))


def srcc(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Spearman rank-order correlation coefficient, ties by average rank."""
    t, p = _pair(y_true, y_pred)
    return _pearson(average_ranks(t), average_ranks(p))


def rmse(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    t, p = _pair(y_true, y_pred)
    return float(np.sqrt(np.mean((t - p) ** 2)))


def mae(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    t, p = _pair(y_true, y_pred)
    return float(np.mean(np.abs(t - p)))


def challenge_score(plcc_value: float, srcc_value: float) -> float:
    """DFGC-VRA's score of one test set: the mean of PLCC and SRCC."""
    return (plcc_value + srcc_value) / 2.0


def mos_report(y_true: ArrayLike, y_pred: ArrayLike) -> dict[str, float]:
    """``{n, plcc, srcc, rmse, mae, score}`` for one test set."""
    t, p = _pair(y_true, y_pred)
    r_p, r_s = _pearson(t, p), _pearson(average_ranks(t), average_ranks(p))
    return {
        "n": int(t.size),
        "plcc": r_p,
        "srcc": r_s,
        "rmse": float(np.sqrt(np.mean((t - p) ** 2))),
        "mae": float(np.mean(np.abs(t - p))),
        "score": challenge_score(r_p, r_s),
    }


def multi_set_report(sets: Mapping[str, tuple[ArrayLike, ArrayLike]]) -> dict[str, dict]:
    """Per-test-set reports plus their unweighted average (the challenge's final ranking).

    ``sets`` maps a test-set name to ``(y_true, y_pred)``. The average is over sets, not over
    videos, as in DFGC-VRA: a small test set of unseen methods counts as much as a large one.
    """
    if not sets:
        raise ValueError("no test set to report")
    per_set = {name: mos_report(t, p) for name, (t, p) in sets.items()}
    keys = ("plcc", "srcc", "rmse", "mae", "score")
    average = {k: float(np.mean([r[k] for r in per_set.values()])) for k in keys}
    average["n"] = int(sum(r["n"] for r in per_set.values()))
    return {"sets": per_set, "average": average}
