"""``bench/realism_ci.py``: the point figures are mos_report's on the shared test clips, the
bootstrap intervals hold them, and a run compared with itself differs by exactly 0."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from _media import bench_module

from detectors.realism.metrics import mos_report

realism_ci = bench_module("realism_ci")


def _write(run: Path, mos, pred, extra=()) -> Path:
    (run / "reports").mkdir(parents=True)
    with open(run / "reports" / "predictions.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["test_set", "video", "method", "identity", "mos", "model", "baseline"])
        for i, (m, p) in enumerate(zip(mos, pred, strict=True)):
            w.writerow(["unseen_identity", f"p{i % 2}/q{i:02d}", "self_blend", f"p{i % 2}", m, p, 0])
        for row in extra:
            w.writerow(row)
    return run


def test_side_by_side_figures_and_intervals(tmp_path, capsys):
    rng = np.random.default_rng(3)
    mos = np.repeat(np.linspace(1, 5, 9), 2)
    good = mos + rng.normal(0, 0.3, mos.size)
    poor = mos + rng.normal(0, 2.0, mos.size)
    a = _write(tmp_path / "good", mos, good,
               extra=[["other_set", "x", "m", "p", 1, 5, 0]])  # another test set: ignored
    b = _write(tmp_path / "poor", mos, poor)
    assert realism_ci.main([str(a), str(b), str(a), "--boot", "300"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "n = 18 clips" in out[0]
    rows = {i: line.split() for i, line in enumerate(out[2:])}
    for row, pred in ((rows[0], good), (rows[1], poor)):
        ref = mos_report(mos, pred)
        for col, key in ((1, "plcc"), (4, "srcc"), (7, "rmse")):
            point = float(row[col])
            lo, hi = float(row[col + 1].strip("[,")), float(row[col + 2].strip("]"))
            assert point == round(ref[key], 3) and lo <= point <= hi, (key, row)
    assert rows[2][10:] == ["+0.000", "[0.000,", "0.000]"]  # the first run against itself
    assert float(rows[1][10]) < 0  # the noisier run ranks worse
