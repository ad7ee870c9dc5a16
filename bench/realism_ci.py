"""Realism runs side by side with 95% bootstrap intervals, from their ``reports/predictions.csv``.

    python bench/realism_ci.py /work/runs/fit/realism_lite0_imagenet \
        /work/runs/fit/realism_lite0_scratch [--test-set unseen_identity] [--boot 2000]

One row per run (``model`` column of its predictions): n, PLCC, SRCC, RMSE with percentile
bootstrap intervals over test clips (clips resampled with replacement, the same resamples for
every run), and the paired SRCC difference to the first run. Clips of one person are not
independent, so with few test people the intervals are optimistic.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from detectors.realism.metrics import mos_report


def read_predictions(run: Path, test_set: str) -> dict[str, tuple[float, float]]:
    with open(run / "reports" / "predictions.csv", newline="", encoding="utf-8") as f:
        return {row["video"]: (float(row["mos"]), float(row["model"]))
                for row in csv.DictReader(f) if row["test_set"] == test_set}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--test-set", default="unseen_identity")
    parser.add_argument("--boot", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    preds = [read_predictions(run, args.test_set) for run in args.runs]
    videos = sorted(set.intersection(*(set(p) for p in preds)))
    mos = np.array([preds[0][v][0] for v in videos])
    scores = [np.array([p[v][1] for v in videos]) for p in preds]
    rng = np.random.default_rng(args.seed)
    draws = [rng.integers(0, len(videos), len(videos)) for _ in range(args.boot)]

    def interval(values):
        lo, hi = np.nanpercentile(values, [2.5, 97.5])
        return f"[{lo:.3f}, {hi:.3f}]"

    boot_srcc = [np.array([mos_report(mos[d], s[d])["srcc"] for d in draws]) for s in scores]
    print(f"test set {args.test_set}, n = {len(videos)} clips, {args.boot} bootstrap resamples")
    print(f"{'run':34s} {'PLCC':>22s} {'SRCC':>22s} {'RMSE':>22s} {'SRCC - first':>24s}")
    for run, s, bs in zip(args.runs, scores, boot_srcc, strict=True):
        full = mos_report(mos, s)
        boot = [mos_report(mos[d], s[d]) for d in draws]
        cells = [f"{full[k]:.3f} {interval([b[k] for b in boot])}" for k in ("plcc", "srcc", "rmse")]
        diff = f"{full['srcc'] - mos_report(mos, scores[0])['srcc']:+.3f} {interval(bs - boot_srcc[0])}"
        print(f"{run.name:34s} " + " ".join(f"{c:>22s}" for c in cells) + f" {diff:>24s}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
