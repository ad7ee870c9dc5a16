"""PNG figures for evaluation reports: ROC curves and confusion matrices (matplotlib, Agg).

Titles and legend names come from users (run names, file names): they are drawn as plain text,
never parsed as mathtext (``text.parse_math`` off), so ``$`` or ``^`` in a name cannot break a plot.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping

import numpy as np

from detectors.metrics import roc_auc, roc_points
from mrigan.fileio import atomic_write_bytes


def _figure():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


#: matplotlib settings for every figure here: strings are text, not mathtext.
TEXT_ONLY = {"text.parse_math": False}


def _save(fig, path: str | os.PathLike) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    _figure().close(fig)
    atomic_write_bytes(path, buf.getvalue())


def save_roc(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str | os.PathLike,
             title: str = "ROC") -> None:
    """One ROC curve per entry ``name -> (y_true, y_score)``, AUC in the legend."""
    plt = _figure()
    with plt.rc_context(TEXT_ONLY):
        _roc_figure(plt, curves, path, title)


def _roc_figure(plt, curves, path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    for name, (y, s) in curves.items():
        y, s = np.asarray(y), np.asarray(s, dtype=float)
        if y.min() == y.max():
            continue  # one class only: no curve
        fpr, tpr, _ = roc_points(y, s)
        ax.plot(fpr, tpr, lw=1.8, label=f"{name} (AUC {roc_auc(y.astype(np.int8), s):.3f})")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate (reals called fake)",
           ylabel="true positive rate (fakes caught)", title=title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    _save(fig, path)


def save_confusion(counts: Mapping[str, int], path: str | os.PathLike,
                   title: str = "confusion matrix") -> None:
    """2x2 matrix (rows: true real/fake, columns: predicted real/fake) with counts and rates."""
    plt = _figure()
    with plt.rc_context(TEXT_ONLY):
        _confusion_figure(plt, counts, path, title)


def _confusion_figure(plt, counts, path, title: str) -> None:
    m = np.array([[counts["tn"], counts["fp"]], [counts["fn"], counts["tp"]]], dtype=float)
    rates = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(3.6, 3.2))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(2):
        for j in range(2):
            ax.text(j, i, f"{int(m[i, j])}\n{rates[i, j]:.1%}", ha="center", va="center",
                    color="white" if rates[i, j] > 0.5 else "black", fontsize=10)
    ax.set_xticks([0, 1], ["real", "fake"])
    ax.set_yticks([0, 1], ["real", "fake"])
    ax.set(xlabel="predicted", ylabel="true", title=title)
    _save(fig, path)
