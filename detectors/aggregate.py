"""Video-level verdicts from face scores, and the validation-only parameter search.

A rule turns the fake probabilities of a video's faces (or clips) into a video *score* (for
ROC AUC / EER / AP) and a *decision*. Rules, by name:

``count``      the paper's rule: fake when more than ``fraction`` of the faces score above
               ``threshold``; score = share of faces above ``threshold`` (paper: 0.8/0.3 for
               plain faces, 0.7/0.3 for MRIs).
``mean``       fake when the mean probability is above ``threshold``; score = mean.
``confident``  the DFDC winner's strategy (Seferbekov): if more than ``fraction`` of the faces
               and more than ``min_faces`` faces are above ``threshold``, the mean of those
               confident fakes; else, if more than 90% are below 0.2, the mean of those
               confident reals; else the mean of all. Fake when that score is above 0.5.

The original MRI-GAN code picked (threshold, fraction) on the test set. Here
:func:`grid_search` takes validation videos only - it has no parameter through which test
labels could reach it - and :func:`apply_rule` applies its choice unchanged to each test set.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from detectors.metrics import binary_report
from mrigan.registry import Registry

RULES = Registry("aggregation rule")


class Rule:
    """A video rule: ``score(probs, **params)`` and ``is_fake(score, probs, **params)``."""

    name: str = ""
    defaults: Mapping[str, float] = {}
    #: parameters searched on validation, in grid order
    searched: tuple[str, ...] = ()

    def params(self, **given: float | None) -> dict[str, float]:
        out = dict(self.defaults)
        for key, value in given.items():
            if value is None:
                continue
            if key not in out:
                raise KeyError(f"rule {self.name!r} has no parameter {key!r}; has {sorted(out)}")
            out[key] = float(value)
        return out

    def score(self, probs: np.ndarray, **params: float) -> float:  # pragma: no cover
        raise NotImplementedError

    def is_fake(self, score: float, probs: np.ndarray, **params: float) -> bool:  # pragma: no cover
        raise NotImplementedError

    def describe(self, **params: float) -> str:  # pragma: no cover
        raise NotImplementedError

    def grid(self, thresholds: Sequence[float], fractions: Sequence[float]) -> list[dict]:
        axes = {"threshold": thresholds, "fraction": fractions}
        combos: list[dict] = [{}]
        for name in self.searched:
            combos = [{**c, name: float(v)} for c in combos for v in axes[name]]
        return [self.params(**c) for c in combos]


@RULES.register("count")
class CountRule(Rule):
    name = "count"
    defaults = {"threshold": 0.8, "fraction": 0.3}
    searched = ("threshold", "fraction")

    def score(self, probs, *, threshold, fraction):
        return float(np.mean(probs > threshold))

    def is_fake(self, score, probs, *, threshold, fraction):
        return score > fraction

    def describe(self, *, threshold, fraction):
        return (f"fake when more than {fraction:.0%} of the faces have score above "
                f"{threshold:.2f}")


@RULES.register("mean")
class MeanRule(Rule):
    name = "mean"
    defaults = {"threshold": 0.5}
    searched = ("threshold",)

    def score(self, probs, *, threshold):
        return float(np.mean(probs))

    def is_fake(self, score, probs, *, threshold):
        return score > threshold

    def describe(self, *, threshold):
        return f"fake when the mean face score is above {threshold:.2f}"


@RULES.register("confident")
class ConfidentRule(Rule):
    name = "confident"
    defaults = {"threshold": 0.8, "fraction": 0.4, "min_faces": 11.0, "real_threshold": 0.2,
                "real_fraction": 0.9, "decision": 0.5}
    searched = ("threshold", "fraction")

    def score(self, probs, *, threshold, fraction, min_faces, real_threshold, real_fraction,
              decision):
        n = probs.size
        confident_fake = probs > threshold
        n_fake = int(confident_fake.sum())
        if n_fake > fraction * n and n_fake > min_faces:
            return float(probs[confident_fake].mean())
        confident_real = probs < real_threshold
        if confident_real.sum() > real_fraction * n:
            return float(probs[confident_real].mean())
        return float(probs.mean())

    def is_fake(self, score, probs, *, decision, **_):
        return score > decision

    def describe(self, *, threshold, fraction, min_faces, real_threshold, real_fraction,
                 decision):
        return (f"score = mean of the faces above {threshold:.2f} if more than {fraction:.0%} "
                f"(and more than {min_faces:.0f}) are, else of those below {real_threshold:.2f} "
                f"if more than {real_fraction:.0%} are, else of all; fake when score is above "
                f"{decision:.2f}")


def get_rule(name: str) -> Rule:
    return RULES.build(name)


# ----------------------------------------------------------------------------------------------


def _probs(scores: Iterable[float]) -> np.ndarray:
    p = np.asarray(list(scores) if not isinstance(scores, np.ndarray) else scores,
                   dtype=np.float64).ravel()
    if p.size == 0:
        raise ValueError("a video needs at least one face score")
    return p


def decide(rule: str, scores: Iterable[float], *, threshold: float | None = None,
           fraction: float | None = None, **params: float) -> tuple[str, float, dict]:
    """One video: ``("fake" | "real", score, the parameters used)``."""
    r = get_rule(rule)
    used = r.params(threshold=threshold, fraction=fraction if "fraction" in r.defaults else None,
                    **params)
    p = _probs(scores)
    score = r.score(p, **used)
    return ("fake" if r.is_fake(score, p, **used) else "real"), score, used


def describe(rule: str, **params: float) -> str:
    """A sentence saying how ``rule`` with ``params`` decides (for reports)."""
    r = get_rule(rule)
    return r.describe(**r.params(**params))


@dataclass(frozen=True)
class VideoScores:
    """The unit scores of one video, with its label and metadata."""

    video: str
    label: int
    probs: np.ndarray
    meta: dict = field(default_factory=dict)


def group_by_video(units: Sequence[Mapping], probs: Sequence[float]) -> list[VideoScores]:
    """Per-unit metadata (``video``, ``label``, ...) + probabilities -> one entry per video.

    A video whose units disagree on the label is an error (it would mean a broken manifest).
    """
    if len(units) != len(probs):
        raise ValueError(f"{len(units)} units but {len(probs)} scores")
    grouped: OrderedDict[str, list[int]] = OrderedDict()
    for i, u in enumerate(units):
        grouped.setdefault(str(u["video"]), []).append(i)
    p = np.asarray(probs, dtype=np.float64)
    out = []
    for video, idx in grouped.items():
        labels = {int(units[i]["label"]) for i in idx}
        if len(labels) != 1:
            raise ValueError(f"video {video!r} has faces labelled both real and fake")
        first = units[idx[0]]
        meta = {k: first.get(k, "") for k in ("identity", "method", "source")}
        out.append(VideoScores(video, labels.pop(), p[idx], meta))
    return out


@dataclass(frozen=True)
class VideoResults:
    rule: str
    params: dict
    videos: list[str]
    labels: np.ndarray
    scores: np.ndarray
    fake: np.ndarray
    n_units: np.ndarray

    def report(self) -> dict:
        return binary_report(self.labels, self.scores, y_pred=self.fake)


def apply_rule(rule: str, videos: Sequence[VideoScores], params: Mapping[str, float]) -> VideoResults:
    r = get_rule(rule)
    used = r.params(**params)
    scores = np.array([r.score(v.probs, **used) for v in videos])
    fake = np.array([r.is_fake(s, v.probs, **used) for s, v in zip(scores, videos, strict=True)],
                    dtype=bool)
    return VideoResults(rule, used, [v.video for v in videos],
                        np.array([v.label for v in videos], dtype=np.int64), scores, fake,
                        np.array([v.probs.size for v in videos], dtype=np.int64))


@dataclass(frozen=True)
class GridSearchResult:
    rule: str
    objective: str
    params: dict  # the chosen parameters
    value: float  # the objective they reach on validation
    table: list[dict]  # every candidate with its objective (for the report)


def validation_quantiles(validation: Sequence[VideoScores], n: int) -> tuple[float, ...]:
    """``n`` face-score thresholds at evenly spaced quantiles (1/(n+1) ... n/(n+1)) of the
    validation videos' face scores, rounded to 4 decimals.

    Added to the fixed grid by :func:`detectors.evaluate.choose_rule` (``AggregationConfig.
    quantile_thresholds``): a detector whose face scores all lie below the paper's grid (0.5 -
    0.95), as a briefly trained one's can, otherwise gets the same video score (0) for every
    video and a meaningless AUC of exactly 0.5. Validation scores only, like the search itself.
    """
    if n <= 0 or not validation:
        return ()
    scores = np.concatenate([np.asarray(v.probs, dtype=np.float64).ravel() for v in validation])
    if scores.size == 0:
        return ()
    qs = np.quantile(scores, np.arange(1, n + 1) / (n + 1))
    return tuple(sorted({round(float(q), 4) for q in qs}))


def grid_search(rule: str, validation: Sequence[VideoScores], *,
                thresholds: Sequence[float] = tuple(np.round(np.arange(0.5, 0.951, 0.05), 2)),
                fractions: Sequence[float] = tuple(np.round(np.arange(0.1, 0.71, 0.1), 1)),
                objective: str = "balanced_accuracy") -> GridSearchResult:
    """Pick the rule's parameters that maximise ``objective`` on validation videos.

    Takes validation data only, by construction. Ties keep the first candidate in grid order
    (lowest threshold, then lowest fraction), so the choice is deterministic.
    """
    if not validation:
        raise ValueError("grid search needs at least one validation video")
    labels = {v.label for v in validation}
    if labels != {0, 1}:
        raise ValueError(f"validation videos must include reals and fakes, got labels {labels}")
    best: tuple[float, dict] | None = None
    table = []
    for params in get_rule(rule).grid(thresholds, fractions):
        report = apply_rule(rule, validation, params).report()
        if objective not in report:
            raise KeyError(f"unknown objective {objective!r}; use a binary_report key")
        value = float(report[objective])
        table.append({**params, objective: value})
        if not math.isnan(value) and (best is None or value > best[0]):
            best = (value, params)
    if best is None:
        raise ValueError(f"objective {objective!r} is undefined for every candidate")
    return GridSearchResult(rule, objective, best[1], best[0], table)
