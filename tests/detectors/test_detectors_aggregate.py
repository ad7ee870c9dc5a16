"""Video-level rules on hand-made inputs; the validation-only grid search."""

from __future__ import annotations

import numpy as np
import pytest

from detectors import aggregate
from detectors.aggregate import VideoScores, apply_rule, decide, grid_search, group_by_video
from detectors.config import AggregationConfig
from detectors.evaluate import choose_rule
from mrigan.config import ConfigError


def test_count_rule_is_the_papers_more_than_fraction_above_threshold():
    label, score, used = decide("count", [0.9, 0.85, 0.1, 0.2], threshold=0.8, fraction=0.3)
    assert (label, score, used) == ("fake", 0.5, {"threshold": 0.8, "fraction": 0.3})
    assert decide("count", [0.9, 0.1, 0.1, 0.1], threshold=0.8, fraction=0.3)[:2] == ("real", 0.25)
    # exactly 30% above is not "more than" 30%; a face at the threshold is not "above" it
    assert decide("count", [0.95] * 3 + [0.1] * 7, threshold=0.8, fraction=0.3)[0] == "real"
    assert decide("count", [0.95] * 4 + [0.1] * 6, threshold=0.8, fraction=0.3)[0] == "fake"
    assert decide("count", [0.8] * 10, threshold=0.8, fraction=0.3)[:2] == ("real", 0.0)


def test_mean_rule():
    assert decide("mean", [0.6, 0.6, 0.3], threshold=0.5)[:2] == ("real", pytest.approx(0.5))
    assert decide("mean", [0.6, 0.6, 0.33], threshold=0.5)[0] == "fake"
    assert decide("mean", [0.6, 0.6, 0.33], threshold=0.6)[0] == "real"
    with pytest.raises(ValueError, match="at least one"):
        decide("mean", [])


def _winner_confident_strategy(pred, t=0.8):
    """Selim Seferbekov's DFDC-winning rule, as published (kernel_utils.py), the reference."""
    pred = np.array(pred)
    sz = len(pred)
    fakes = np.count_nonzero(pred > t)
    if fakes > sz // 2.5 and fakes > 11:
        return np.mean(pred[pred > t])
    elif np.count_nonzero(pred < 0.2) > 0.9 * sz:
        return np.mean(pred[pred < 0.2])
    else:
        return np.mean(pred)


def test_confident_rule_matches_the_dfdc_winner():
    rng = np.random.default_rng(0)
    branches = set()
    for k in range(300):
        n = int(rng.integers(1, 40))
        kind = k % 3  # mostly-fake, mostly-real, mixed videos so every branch is exercised
        base = {0: rng.uniform(0.7, 1.0, n), 1: rng.uniform(0.0, 0.25, n), 2: rng.random(n)}[kind]
        _, score, _ = decide("confident", base, threshold=0.8)
        assert score == pytest.approx(_winner_confident_strategy(base, 0.8), abs=1e-12)
        branches.add(round(score, 12) == round(float(np.mean(base)), 12))
    assert branches == {True, False}
    # the hand-made case: 12 confident fakes of 20 -> mean of those 12, fake
    probs = [0.9] * 12 + [0.3] * 8
    assert decide("confident", probs)[:2] == ("fake", pytest.approx(0.9))
    # 19 of 20 below 0.2 -> mean of the confident reals
    probs = [0.1] * 19 + [0.95]
    assert decide("confident", probs)[:2] == ("real", pytest.approx(0.1))


def test_describe_and_unknown_names():
    assert "30%" in aggregate.describe("count", threshold=0.7, fraction=0.3)
    assert "0.70" in aggregate.describe("count", threshold=0.7, fraction=0.3)
    with pytest.raises(KeyError, match="known: confident, count, mean"):
        decide("median", [0.5])
    with pytest.raises(KeyError, match="no parameter"):
        aggregate.get_rule("mean").params(fraction=0.2, bogus=1)


def test_group_by_video():
    units = [{"video": "a", "label": 1}, {"video": "b", "label": 0}, {"video": "a", "label": 1}]
    videos = group_by_video(units, [0.9, 0.2, 0.7])
    assert [(v.video, v.label, v.probs.tolist()) for v in videos] == [
        ("a", 1, [0.9, 0.7]), ("b", 0, [0.2])]
    with pytest.raises(ValueError, match="both real and fake"):
        group_by_video([{"video": "a", "label": 1}, {"video": "a", "label": 0}], [0.1, 0.2])


def _video(name, label, probs):
    return VideoScores(name, label, np.asarray(probs, dtype=float))


# Validation videos built so that (threshold 0.70, fraction 0.3) is the only grid point that
# classifies all of them correctly:
#   fake A: 4/10 faces at 0.72          -> needs threshold < 0.72 and fraction < 0.4
#   real B: 4/10 faces at 0.66          -> needs threshold >= 0.66 (else 40% are above)
#   real C: 3/10 faces at 0.90          -> needs fraction >= 0.3 (30% are above any t < 0.9)
#   fake D: 9/10 faces at 0.99          -> fake for every grid point
VALIDATION = [
    _video("A", 1, [0.72] * 4 + [0.1] * 6),
    _video("B", 0, [0.66] * 4 + [0.0] * 6),
    _video("C", 0, [0.90] * 3 + [0.0] * 7),
    _video("D", 1, [0.99] * 9 + [0.0]),
]


def test_grid_search_finds_the_constructed_optimum():
    result = grid_search("count", VALIDATION)
    assert result.params == {"threshold": 0.7, "fraction": 0.3}
    assert result.value == 1.0
    # exactly one of the 10 x 7 candidates is perfect
    assert len(result.table) == 70
    assert sum(row["balanced_accuracy"] == 1.0 for row in result.table) == 1
    # brute force over the same grid agrees
    best = max(((t, f) for t in np.arange(0.5, 0.951, 0.05) for f in np.arange(0.1, 0.71, 0.1)),
               key=lambda tf: apply_rule("count", VALIDATION, {"threshold": tf[0],
                                                               "fraction": tf[1]}).report()[
                   "balanced_accuracy"])
    assert best == pytest.approx((0.7, 0.3))


def test_grid_search_never_sees_test_labels():
    """The choice depends on validation only; test labels (any of them) cannot change it,
    and the test set is scored with exactly the validation choice."""
    from detectors.evaluate import score_test_sets

    rng = np.random.default_rng(0)
    test = [_video(f"t{i}", int(i % 2), rng.random(10)) for i in range(30)]
    flipped = [VideoScores(v.video, 1 - v.label, v.probs) for v in test]
    # on the test set itself another point would be better:
    on_test = grid_search("count", test).params
    assert on_test != {"threshold": 0.7, "fraction": 0.3}
    paper_grid = AggregationConfig(quantile_thresholds=0)
    runs = [score_test_sets("count", VALIDATION, {"test": t}, aggregation=paper_grid)
            for t in (test, flipped)]
    for chosen, per_set in runs:
        assert chosen.params == {"threshold": 0.7, "fraction": 0.3}
        assert per_set["test"].params == chosen.params
    # same decisions for both label versions, only the metrics differ
    np.testing.assert_array_equal(runs[0][1]["test"].fake, runs[1][1]["test"].fake)
    # the default grid adds thresholds from the validation scores only: still label-blind
    runs = [score_test_sets("count", VALIDATION, {"test": t}) for t in (test, flipped)]
    assert runs[0][0].params == runs[1][0].params == choose_rule("count", VALIDATION).params
    np.testing.assert_array_equal(runs[0][1]["test"].fake, runs[1][1]["test"].fake)


def test_grid_search_needs_both_classes():
    with pytest.raises(ValueError, match="reals and fakes"):
        grid_search("count", [_video("x", 1, [0.9])])


def test_scores_below_the_papers_grid_still_separate_videos_with_validation_quantiles():
    """A detector whose face scores all lie under 0.5 (a briefly trained one) ranks videos
    correctly; the paper's fixed 0.5-0.95 grid turns every video's count score into 0, the
    validation-quantile thresholds recover the ranking on the held-out videos."""
    rng = np.random.default_rng(0)

    def videos(prefix):
        out = []
        for i in range(6):
            label = i % 2
            probs = rng.uniform(0.05, 0.2, 20) + (0.15 if label else 0.0)  # all < 0.5
            out.append(VideoScores(f"{prefix}{i}", label, probs))
        return out

    validation, test = videos("v"), videos("t")
    paper = choose_rule("count", validation, aggregation=AggregationConfig(quantile_thresholds=0))
    on_test = apply_rule("count", test, paper.params)
    assert set(on_test.scores) == {0.0} and on_test.report()["auc"] == pytest.approx(0.5)
    chosen = choose_rule("count", validation, aggregation=AggregationConfig())
    assert chosen.params["threshold"] < 0.5 and chosen.value == pytest.approx(1.0)
    assert apply_rule("count", test, chosen.params).report()["auc"] == pytest.approx(1.0)
    # the extra thresholds are quantiles of the validation face scores only
    qs = aggregate.validation_quantiles(validation, 9)
    all_val = np.concatenate([v.probs for v in validation])
    assert len(qs) == 9 and min(qs) >= all_val.min() and max(qs) <= all_val.max()
    assert qs == aggregate.validation_quantiles(validation + [VideoScores("x", 1, np.array([]))], 9)
    with pytest.raises(ConfigError, match="quantile_thresholds"):
        AggregationConfig(quantile_thresholds=-1)
