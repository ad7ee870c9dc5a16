"""Binary detection metrics: the paper's table plus EER and AP, with bootstrap intervals.

Only numbers live here: plots are in :mod:`detectors.plots`, threshold search in
:mod:`detectors.aggregate`. The metrics are computed with NumPy/SciPy directly (ranks for AUC,
the step-wise precision/recall sum for AP, a linearly interpolated ROC crossing for EER) so a
bootstrap of a thousand resamples stays fast; tests check every value against scikit-learn.

Conventions: label 1 = fake (the positive class); a sample is predicted fake when its score is
``>= threshold``. Rates with an empty denominator (e.g. TPR on a set without fakes) are NaN,
except precision and F1, which follow scikit-learn's ``zero_division=0``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np

from mrigan.localization import roc_auc  # the library's one ROC AUC (Mann-Whitney U)

#: The order of the paper's table, then the threshold-free metrics.
TABLE_METRICS: tuple[str, ...] = (
    "tpr", "fnr", "fpr", "tnr", "accuracy", "balanced_accuracy", "f1", "precision",
    "specificity", "auc", "eer", "ap",
)


def _as_arrays(y_true, y_score) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).ravel()
    s = np.asarray(y_score, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"y_true has {y.size} values but y_score has {s.size}")
    if y.size == 0:
        raise ValueError("no samples to score")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"y_true must hold 0 (real) / 1 (fake), got values {np.unique(y)[:5]}")
    if not np.isfinite(s).all():
        raise ValueError(f"y_score holds {int((~np.isfinite(s)).sum())} non-finite value(s)")
    return y.astype(np.int8), s


def _div(num: float, den: float, empty: float = math.nan) -> float:
    return float(num) / float(den) if den else empty


def _curve_counts(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative (tp, fp) at each distinct score, thresholds in decreasing order."""
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(s_sorted)), y.size - 1]
    tp = np.cumsum(y_sorted)[last_of_run].astype(np.float64)
    fp = (last_of_run + 1) - tp
    return tp, fp, s_sorted[last_of_run]


def roc_points(y_true, y_score) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)`` starting at (0, 0), one point per distinct score."""
    y, s = _as_arrays(y_true, y_score)
    tp, fp, thr = _curve_counts(y, s)
    n_pos, n_neg = tp[-1], fp[-1]
    tpr = np.r_[0.0, tp / n_pos] if n_pos else np.full(tp.size + 1, math.nan)
    fpr = np.r_[0.0, fp / n_neg] if n_neg else np.full(fp.size + 1, math.nan)
    return fpr, tpr, np.r_[np.inf, thr]


def average_precision(y: np.ndarray, s: np.ndarray) -> float:
    """Sum over distinct thresholds of (recall step) x precision - scikit-learn's definition."""
    tp, fp, _ = _curve_counts(y, s)
    if tp[-1] == 0:
        return math.nan
    precision = tp / (tp + fp)
    recall = tp / tp[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def equal_error_rate(y: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    """``(eer, threshold)`` where the ROC's FNR = 1 - TPR crosses FPR, linearly interpolated
    between the two ROC points that bracket the crossing."""
    if y.all() or not y.any():
        return math.nan, math.nan
    fpr, tpr, thr = roc_points(y, s)
    fnr = 1.0 - tpr
    gap = fpr - fnr  # -1 at the (0, 0) start, +1 at the (1, 1) end, non-decreasing
    i = int(np.argmax(gap >= 0))
    if gap[i] == 0:
        return float(fpr[i]), float(thr[i])
    t = -gap[i - 1] / (gap[i] - gap[i - 1])
    eer = fpr[i - 1] + t * (fpr[i] - fpr[i - 1])
    return float(eer), float(thr[i])


def confusion_counts(y_true, y_pred) -> dict[str, int]:
    y = np.asarray(y_true).astype(bool).ravel()
    p = np.asarray(y_pred).astype(bool).ravel()
    return {"tp": int((y & p).sum()), "fp": int((~y & p).sum()),
            "tn": int((~y & ~p).sum()), "fn": int((y & ~p).sum())}


def binary_report(y_true: Sequence[int] | np.ndarray, y_score: Sequence[float] | np.ndarray,
                  threshold: float = 0.5, *,
                  y_pred: Sequence[int] | np.ndarray | None = None) -> dict[str, float]:
    """All detection metrics of scores ``y_score`` (higher = more fake) against ``y_true``.

    Returns the paper's table (tpr, fnr, fpr, tnr, accuracy, balanced_accuracy, f1, precision,
    specificity, auc), plus ``eer`` (and ``eer_threshold``), ``ap``, the confusion counts
    ``tp, fp, tn, fn``, ``n``, ``n_fake``, ``n_real`` and the ``threshold`` used.

    ``y_pred`` gives the decisions directly when they are not ``score >= threshold`` (a
    video-level rule such as the paper's count rule decides with its own cut); the ranking
    metrics (auc, eer, ap) still use ``y_score``.
    """
    y, s = _as_arrays(y_true, y_score)
    if y_pred is None:
        pred = s >= threshold
    else:
        pred = np.asarray(y_pred).astype(bool).ravel()
        if pred.shape != y.shape:
            raise ValueError(f"y_pred has {pred.size} values but y_true has {y.size}")
        threshold = math.nan
    counts = confusion_counts(y, pred)
    tp, fp, tn, fn = counts["tp"], counts["fp"], counts["tn"], counts["fn"]
    tpr = _div(tp, tp + fn)
    tnr = _div(tn, tn + fp)
    eer, eer_thr = equal_error_rate(y, s)
    report = {
        "tpr": tpr,
        "fnr": _div(fn, tp + fn),
        "fpr": _div(fp, tn + fp),
        "tnr": tnr,
        "accuracy": _div(tp + tn, y.size),
        # scikit-learn's balanced accuracy: mean recall over the classes present
        "balanced_accuracy": float(np.nanmean([tpr, tnr])),
        "f1": _div(2 * tp, 2 * tp + fp + fn, empty=0.0),
        "precision": _div(tp, tp + fp, empty=0.0),
        "specificity": tnr,
        "recall": tpr,
        "auc": roc_auc(y, s),
        "eer": eer,
        "eer_threshold": eer_thr,
        "ap": average_precision(y, s),
        "threshold": float(threshold),
        "n": int(y.size),
        "n_fake": int(y.sum()),
        "n_real": int(y.size - y.sum()),
    }
    report.update(counts)
    return report


def bootstrap_ci(y_true, y_score, threshold: float = 0.5, *, n_boot: int = 1000,
                 confidence: float = 0.95, seed: int = 0, groups: Sequence | None = None,
                 metrics: Sequence[str] = TABLE_METRICS,
                 y_pred: Sequence[int] | np.ndarray | None = None,
                 ) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals ``{metric: (low, high)}`` for :func:`binary_report`.

    ``y_pred``: decisions made by a rule (see :func:`binary_report`), resampled with the rows.

    ``groups`` (e.g. the video of each frame) switches to a cluster bootstrap: whole groups
    are resampled, because frames of one video are not independent and a frame-level
    bootstrap would give intervals that are too narrow. Resamples in which a metric is
    undefined (e.g. AUC without any fake) are left out of that metric's interval.
    """
    y, s = _as_arrays(y_true, y_score)
    pred = None if y_pred is None else np.asarray(y_pred).astype(bool).ravel()
    rng = np.random.default_rng(seed)
    if groups is None:
        members = [np.array([i]) for i in range(y.size)]
    else:
        g = np.asarray(groups).ravel()
        if g.size != y.size:
            raise ValueError(f"groups has {g.size} values but y_true has {y.size}")
        _, inverse = np.unique(g, return_inverse=True)
        order = np.argsort(inverse, kind="mergesort")
        bounds = np.flatnonzero(np.diff(inverse[order])) + 1
        members = np.split(order, bounds)
    n_units = len(members)
    values = {m: np.full(n_boot, math.nan) for m in metrics}
    for b in range(n_boot):
        pick = rng.integers(0, n_units, n_units)
        idx = pick if groups is None else np.concatenate([members[i] for i in pick])
        rep = binary_report(y[idx], s[idx], threshold,
                            y_pred=None if pred is None else pred[idx])
        for m in metrics:
            values[m][b] = rep[m]
    alpha = (1.0 - confidence) / 2.0
    out: dict[str, tuple[float, float]] = {}
    for m, v in values.items():
        v = v[np.isfinite(v)]
        out[m] = ((float(np.quantile(v, alpha)), float(np.quantile(v, 1 - alpha)))
                  if v.size else (math.nan, math.nan))
    return out


def report_with_ci(y_true, y_score, threshold: float = 0.5, *,
                   y_pred: Sequence[int] | np.ndarray | None = None,
                   groups: Sequence | None = None, n_boot: int = 1000, seed: int = 0) -> dict:
    """:func:`binary_report`, plus (when ``n_boot > 0``) ``"ci95": {metric: [low, high]}`` from
    :func:`bootstrap_ci` over :data:`TABLE_METRICS` with the same ``threshold``, ``y_pred``
    and ``groups``: the one report-with-intervals of an evaluated set (video or frame level)."""
    report = binary_report(y_true, y_score, threshold, y_pred=y_pred)
    if n_boot > 0:
        report["ci95"] = {k: list(v) for k, v in bootstrap_ci(
            y_true, y_score, threshold, n_boot=n_boot, seed=seed, groups=groups,
            y_pred=y_pred).items()}
    return report


class ScoreTieWarning(UserWarning):
    """Every score of a set is the same: the model gives one constant output."""


def all_scores_tie(scores: Sequence[float] | np.ndarray) -> bool:
    """True when there are at least two scores and all of them are equal (a collapsed model:
    its AUC is exactly 0.5 and says nothing)."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    return s.size > 1 and bool(np.all(s == s[0]))


def warn_if_scores_tie(scores: Sequence[float] | np.ndarray, what: str = "validation") -> bool:
    """Warn (:class:`ScoreTieWarning`) when :func:`all_scores_tie`; returns whether it did."""
    if not all_scores_tie(scores):
        return False
    s = np.asarray(scores, dtype=np.float64).ravel()
    warnings.warn(
        f"all {s.size} {what} scores are identical ({s[0]:.6g}): the detector gives one constant "
        f"output (AUC 0.5 means nothing); check BatchNorm running statistics, the learning rate "
        f"and the input normalisation", ScoreTieWarning, stacklevel=2)
    return True
