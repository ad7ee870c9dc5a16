"""Figures of a realism report: predicted vs true MOS, one panel per test set (matplotlib, Agg)."""

from __future__ import annotations

import io
import os
from collections.abc import Mapping

import numpy as np

from detectors.realism.metrics import mos_report
from mrigan.fileio import atomic_write_bytes


def save_scatter(sets: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str | os.PathLike,
                 title: str = "predicted vs true MOS") -> None:
    """One panel per ``name -> (y_true, y_pred)``: points, the y = x line, PLCC/SRCC/RMSE."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if not sets:
        raise ValueError("no test set to plot")
    n = len(sets)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 4.0), squeeze=False, layout="constrained")
    for ax, (name, (t, p)) in zip(axes[0], sets.items(), strict=True):
        t, p = np.asarray(t, dtype=float), np.asarray(p, dtype=float)
        lo = min(1.0, float(t.min()), float(p.min())) - 0.1
        hi = max(5.0, float(t.max()), float(p.max())) + 0.1
        ax.plot([lo, hi], [lo, hi], ls="--", c="grey", lw=0.8)
        ax.scatter(t, p, s=14, alpha=0.7, edgecolors="none")
        r = mos_report(t, p) if t.size >= 2 else None
        sub = (f"PLCC {r['plcc']:.3f}  SRCC {r['srcc']:.3f}\nRMSE {r['rmse']:.3f}  n={r['n']}"
               if r else f"n={t.size}")
        ax.set(xlim=(lo, hi), ylim=(lo, hi), xlabel="true MOS", ylabel="predicted MOS",
               title=f"{name}\n{sub}")
        ax.title.set_fontsize(9)
        ax.grid(alpha=0.3)
        ax.set_aspect("equal")
    fig.suptitle(title, fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
