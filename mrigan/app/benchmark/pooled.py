"""The grouped k-fold's report: out-of-fold video scores pooled over folds, with a grouped
(stratified) bootstrap, beside each fold's own figures.

* test rows: every fold scored its own test groups' videos once (its video rule chosen on its
  inner validation groups); those out-of-fold scores and verdicts are pooled: one AUC / AP /
  EER over all paired videos, accuracy of the folds' own verdicts.
* labelled rows: every fold's model scored every labelled video; a video's pooled score is the
  mean of its fold scores, its verdict fake when at least half the folds said fake.

95% intervals (:func:`stratified_bootstrap`), two of them:

* ``ci95``: videos resampled with replacement *within* each stratum, so a group's videos are
  never replaced by another group's and every resample keeps each group's size - strata: the
  identity groups for the test rows; one stratum (the ordinary video bootstrap, as in the
  single split) for the labelled rows, most of whose identities have one video (a stratum of
  one video never varies). It treats the people as fixed: the spread of scores over videos.
* ``ci95_groups``: a two-stage (cluster) bootstrap: the groups (labelled: identities) are
  resampled with replacement, then the videos within each drawn group - the spread when the
  people themselves are a sample (wider; with 7 groups, the honest one for "new people").

Resamples that lack a class (AUC undefined) are left out of a figure's percentiles.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from detectors.metrics import binary_report
from mrigan.app.benchmark.generator_score import mean_face_scores
from mrigan.fileio import atomic_write_json, atomic_write_text

#: pooled figures (threshold-free ones first; accuracy uses the folds' own verdicts)
FIGURES = ("auc", "ap", "eer", "accuracy")


def stratified_bootstrap(y: Sequence[int], score: Sequence[float], verdict: Sequence[int],
                         strata: Sequence[str], *, n_boot: int, seed: int = 0,
                         clusters: bool = False,
                         figures: Sequence[str] = FIGURES) -> dict[str, list[float] | None]:
    """2.5 and 97.5 percentiles of each of ``figures`` (:func:`binary_report` keys) over
    ``n_boot`` resamples that draw, with replacement, as many videos from each stratum as it
    has; ``clusters``: first the strata themselves are drawn with replacement (as many as
    there are), then the videos within each drawn one. None when ``n_boot`` is 0 or a figure
    is undefined in every resample."""
    y, s, v = np.asarray(y, dtype=np.int8), np.asarray(score, float), np.asarray(verdict, bool)
    if n_boot <= 0 or y.size == 0:
        return dict.fromkeys(figures)
    groups = [np.flatnonzero(np.asarray(strata) == k) for k in sorted(set(strata))]
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {f: [] for f in figures}
    for _ in range(n_boot):
        drawn = ([groups[j] for j in rng.integers(0, len(groups), len(groups))] if clusters
                 else groups)
        idx = np.concatenate([g[rng.integers(0, g.size, g.size)] for g in drawn])
        rep = binary_report(y[idx], s[idx], y_pred=v[idx])
        for f in figures:
            if not math.isnan(rep[f]):
                draws[f].append(rep[f])
    return {f: ([float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5))] if d else None)
            for f, d in draws.items()}


def pooled_figures(y, score, verdict, strata, groups, *, n_boot: int, seed: int = 0) -> dict:
    """:data:`FIGURES` of pooled videos with their 95% CIs (``ci95``: within ``strata``;
    ``ci95_groups``: ``groups`` then videos), and the n."""
    rep = binary_report(np.asarray(y, dtype=np.int8), np.asarray(score, float),
                        y_pred=np.asarray(verdict, bool))
    return {**{f: rep[f] for f in FIGURES}, "n": int(rep["n"]), "n_fake": int(rep["n_fake"]),
            "n_real": int(rep["n_real"]),
            "ci95": stratified_bootstrap(y, score, verdict, strata, n_boot=n_boot, seed=seed),
            "ci95_groups": stratified_bootstrap(y, score, verdict, groups, n_boot=n_boot,
                                                seed=seed, clusters=True)}


def read_videos(path: str) -> list[dict]:
    """A fold's ``<set>_videos.csv`` predictions (video, label, identity, score, verdict)."""
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def with_mean_face_scores(rows: list[dict], videos_csv: str) -> list[dict]:
    """``rows`` with each video's score replaced by the mean ``p_fake`` of its faces (from the
    ``<set>_faces.csv`` beside ``videos_csv``): a threshold-free video score, where the video
    rule's own score (a count rule's fraction of faces over a threshold) is coarse."""
    means = mean_face_scores(Path(videos_csv).with_name(
        Path(videos_csv).name.replace("_videos.csv", "_faces.csv")))
    return [{**r, "score": str(means[r["video"]][1])} for r in rows]


def group_of(groups: dict) -> dict[str, str]:
    """identity -> its group's name."""
    return {i: g for g, v in groups.items() for i in v["identities"]}


def pool_test(fold_rows: list[list[dict]], groups: dict, *, n_boot: int, seed: int) -> dict:
    """Out-of-fold test videos of every fold, pooled; strata: the identity groups."""
    of = group_of(groups)
    rows = [r for rows in fold_rows for r in rows]
    videos = [r["video"] for r in rows]
    if len(set(videos)) != len(videos):  # each video is in exactly one fold's test groups
        raise ValueError("a video was tested by two folds")
    out = pooled_figures([r["label"] == "fake" for r in rows], [float(r["score"]) for r in rows],
                         [r["verdict"] == "fake" for r in rows],
                         [of[r["identity"]] for r in rows], [of[r["identity"]] for r in rows],
                         n_boot=n_boot, seed=seed)
    return {**out, "identities": len({r["identity"] for r in rows}),
            "groups": len({of[r["identity"]] for r in rows})}


def pool_labelled(fold_rows: list[list[dict]], *, n_boot: int, seed: int) -> dict:
    """Every fold scored every labelled video: a video's score is the mean of its fold scores,
    its verdict fake when at least half the folds said fake; ``ci95`` over videos,
    ``ci95_groups`` over identities then videos."""
    per: dict[str, dict] = {}
    for rows in fold_rows:
        for r in rows:
            v = per.setdefault(r["video"], {"label": r["label"], "identity": r["identity"],
                                            "scores": [], "fake": 0})
            v["scores"].append(float(r["score"]))
            v["fake"] += r["verdict"] == "fake"
    if any(len(v["scores"]) != len(fold_rows) for v in per.values()):
        raise ValueError("a labelled video was not scored by every fold")
    vs = [per[k] for k in sorted(per)]
    out = pooled_figures([v["label"] == "fake" for v in vs],
                         [float(np.mean(v["scores"])) for v in vs],
                         [2 * v["fake"] >= len(fold_rows) for v in vs],
                         [""] * len(vs), [v["identity"] for v in vs], n_boot=n_boot, seed=seed)
    return {**out, "identities": len({v["identity"] for v in vs})}


def _fmt(value, ci=None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    text = f"{value:.3f}"
    if ci:
        text += f" [{ci[0]:.2f}, {ci[1]:.2f}]"
    return text


def write_fold_report(folder: Path, summary: dict, folds: list[dict], cfg) -> dict:
    """``report/folds.{json,md}``: the pooled rows and the per-fold figures."""
    n_boot, seed = cfg.evaluate.bootstrap, cfg.split.seed
    dets = list(folds[0]["evals"])
    sets = [s for s in folds[0]["evals"][dets[0]]["test_sets"]]
    table = []
    for set_name in sets:
        for det in dets:
            paths = [f["evals"][det]["test_sets"][set_name]["predictions"] for f in folds]
            rows = [read_videos(p) for p in paths]
            means = [with_mean_face_scores(r, p) for r, p in zip(rows, paths, strict=True)]
            pool = ((lambda r: pool_test(r, summary["groups"], n_boot=n_boot, seed=seed))
                    if set_name == "test" else
                    (lambda r: pool_labelled(r, n_boot=n_boot, seed=seed)))
            fig, mean_fig = pool(rows), pool(means)
            table.append({"test_set": set_name, "detector": det, **fig,
                          "mean_face": {k: mean_fig[k] for k in ("auc", "ap", "eer")}
                          | {"ci95": mean_fig["ci95"], "ci95_groups": mean_fig["ci95_groups"]}})
    per_fold = []
    for i, f in enumerate(folds):
        entry = {"fold": i, "test_groups": summary["plan"][i]["test_groups"],
                 "val_groups": summary["plan"][i]["val_groups"],
                 "train_groups": summary["plan"][i]["train_groups"], "detectors": {}}
        for det, ev in f["evals"].items():
            entry["detectors"][det] = {
                "rule": ev["aggregation"]["description"],
                "validation_value": ev["aggregation"]["validation_value"],
                **{s: {"videos": t["videos"], "auc": t["video"]["auc"],
                       "accuracy": t["video"]["accuracy"]} for s, t in ev["test_sets"].items()}}
            if det in f["detectors"]:
                entry["detectors"][det]["best_epoch"] = f["detectors"][det]["best_epoch"]
                entry["detectors"][det]["best_val_auc"] = f["detectors"][det]["best_val_auc"]
        if f["quality"]:
            entry["gan_quality"] = {lab: f["quality"][lab] for lab in ("fake", "real")}
        per_fold.append(entry)
    result = {"table": table, "per_fold": per_fold}
    atomic_write_json(folder / "folds.json", {**summary, **result})
    md = [f"# {summary['name']}: grouped {summary['folds']}-fold, pooled video figures", "",
          summary["what"], "",
          "| test set | detector | videos (fake/real) | identities | AUC | AUC, groups resampled "
          "| AUC of mean face score | AP | EER | Accuracy |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for r in table:
        m = r["mean_face"]
        md.append(f"| {r['test_set']} | {r['detector']} | {r['n']} ({r['n_fake']}/"
                  f"{r['n_real']}) | {r['identities']} | {_fmt(r['auc'], r['ci95']['auc'])} | "
                  f"{_fmt(r['auc'], r['ci95_groups']['auc'])} | "
                  f"{_fmt(m['auc'], m['ci95']['auc'])} / {_fmt(m['auc'], m['ci95_groups']['auc'])} | "
                  + " | ".join(_fmt(r[k], r["ci95"].get(k)) for k in FIGURES[1:]) + " |")
    md += ["", "Values: point estimate [bootstrap 95% CI]; test rows: videos resampled within "
           "their identity group; 'groups resampled': groups drawn with replacement, then videos "
           "within them. AUC, AP, EER and accuracy use the video rule's scores and verdicts "
           "(rule chosen on validation); 'AUC of mean face score' ranks videos by their faces' "
           "mean score instead (within-group CI / groups-resampled CI). Labelled rows: a video's score is the mean over the folds' models; "
           "videos resampled (groups column: identities, then videos).", "", "Per fold (test AUC over its own videos; labelled AUC of its model alone):", "",
           "| fold | test groups | validation groups | " + " | ".join(
               f"{d} test AUC (videos) | {d} labelled AUC" for d in dets) + " |",
           "|---|---|---|" + "---|---|" * len(dets)]
    for e in per_fold:
        cells = []
        for d in dets:
            x = e["detectors"][d]
            cells += [f"{_fmt(x['test']['auc'])} ({x['test']['videos']})",
                      _fmt(x["labelled"]["auc"]) if "labelled" in x else "-"]
        md.append(f"| {e['fold']} | {', '.join(e['test_groups'])} | "
                  f"{', '.join(e['val_groups'])} | " + " | ".join(cells) + " |")
    atomic_write_text(folder / "folds.md", "\n".join(md) + "\n")
    return result


__all__ = ["FIGURES", "pool_labelled", "pool_test", "pooled_figures", "read_videos",
           "stratified_bootstrap", "write_fold_report"]
