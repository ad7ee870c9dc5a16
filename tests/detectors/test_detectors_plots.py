"""Evaluation figures draw user strings (run names, titles) as text: a ``$`` or ``^`` in a name
must not be parsed as matplotlib mathtext (which raises on ``$x^$``)."""

from __future__ import annotations

import numpy as np

from detectors.plots import save_confusion, save_roc
from mrigan.fileio import read_image


def test_roc_and_confusion_take_dollar_names(tmp_path):
    y = np.array([0, 0, 1, 1, 0, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9])
    save_roc({"run $x^$": (y, s)}, tmp_path / "roc.png", title="b_$x^$.mp4")
    save_confusion({"tn": 2, "fp": 1, "fn": 0, "tp": 3}, tmp_path / "cm.png", title="$x^$")
    for name in ("roc.png", "cm.png"):
        assert read_image(tmp_path / name).std() > 5
