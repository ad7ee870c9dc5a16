"""binary_report against scikit-learn on the same inputs; bootstrap intervals."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.interpolate import interp1d
from scipy.optimize import brentq
from sklearn import metrics as skm

from detectors.metrics import binary_report, bootstrap_ci, report_with_ci, roc_points


def _sklearn_eer(y, s):
    fpr, tpr, _ = skm.roc_curve(y, s, drop_intermediate=False)
    return brentq(lambda x: 1.0 - x - interp1d(fpr, tpr)(x), 0.0, 1.0)


CASES = [
    # (n, separation, rounding -> many ties, threshold)
    (40, 0.2, None, 0.5),
    (500, 0.4, 2, 0.5),
    (301, 0.1, 1, 0.7),
    (64, 0.9, None, 0.3),
]


@pytest.mark.parametrize("n,sep,decimals,thr", CASES)
def test_binary_report_matches_sklearn(n, sep, decimals, thr):
    rng = np.random.default_rng(n)
    y = rng.integers(0, 2, n)
    s = np.clip(rng.random(n) * (1 - sep) + sep * y, 0, 1)
    if decimals is not None:
        s = np.round(s, decimals)
    r = binary_report(y, s, thr)
    pred = s >= thr
    tn, fp, fn, tp = skm.confusion_matrix(y, pred, labels=[0, 1]).ravel()
    assert (r["tp"], r["fp"], r["tn"], r["fn"]) == (tp, fp, tn, fn)
    expected = {
        "auc": skm.roc_auc_score(y, s),
        "ap": skm.average_precision_score(y, s),
        "accuracy": skm.accuracy_score(y, pred),
        "balanced_accuracy": skm.balanced_accuracy_score(y, pred),
        "f1": skm.f1_score(y, pred, zero_division=0),
        "precision": skm.precision_score(y, pred, zero_division=0),
        "tpr": skm.recall_score(y, pred),
        "tnr": skm.recall_score(y, pred, pos_label=0),
        "specificity": skm.recall_score(y, pred, pos_label=0),
        "fpr": 1 - skm.recall_score(y, pred, pos_label=0),
        "fnr": 1 - skm.recall_score(y, pred),
        "eer": _sklearn_eer(y, s),
    }
    for key, value in expected.items():
        assert r[key] == pytest.approx(value, abs=1e-9), key


def test_roc_points_match_sklearn():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.random(200) + 0.3 * y, 1)
    fpr, tpr, thr = roc_points(y, s)
    sk_fpr, sk_tpr, sk_thr = skm.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    np.testing.assert_allclose(thr[1:], sk_thr[1:])


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_single_class_and_degenerate_predictions():
    r = binary_report([1, 1, 1], [0.9, 0.2, 0.6])  # sklearn warns: only one class
    assert math.isnan(r["auc"]) and math.isnan(r["fpr"]) and math.isnan(r["eer"])
    assert r["tpr"] == pytest.approx(2 / 3)
    assert r["balanced_accuracy"] == pytest.approx(
        skm.balanced_accuracy_score([1, 1, 1], [1, 0, 1]))
    r = binary_report([0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4], threshold=0.9)  # no fake predicted
    assert r["precision"] == 0.0 and r["f1"] == 0.0 and r["tnr"] == 1.0
    with pytest.raises(ValueError, match="0 \\(real\\) / 1 \\(fake\\)"):
        binary_report([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="non-finite"):
        binary_report([0, 1], [0.1, float("nan")])


def test_bootstrap_intervals():
    rng = np.random.default_rng(0)
    n = 400
    y = rng.integers(0, 2, n)
    s = np.clip(rng.random(n) * 0.7 + 0.3 * y, 0, 1)
    point = binary_report(y, s)
    ci = bootstrap_ci(y, s, n_boot=300, seed=1)
    for key in ("auc", "accuracy", "f1", "eer", "ap", "tpr"):
        lo, hi = ci[key]
        assert lo < point[key] < hi, key
    # the interval narrows like 1/sqrt(n): 4x the data -> about half the width
    y4, s4 = np.tile(y, 4), np.tile(s, 4)
    ci4 = bootstrap_ci(y4, s4, n_boot=300, seed=1)
    ratio = (ci4["auc"][1] - ci4["auc"][0]) / (ci["auc"][1] - ci["auc"][0])
    assert 0.35 < ratio < 0.7
    # one group per sample is the ordinary bootstrap, draw for draw
    assert bootstrap_ci(y, s, n_boot=50, seed=2, groups=np.arange(n)) == bootstrap_ci(
        y, s, n_boot=50, seed=2)
    # clustered copies: a frame-level bootstrap is too narrow, the grouped one is not
    groups = np.tile(np.arange(n), 4)  # the 4 copies of sample i form group i
    ci_grouped = bootstrap_ci(y4, s4, n_boot=300, seed=1, groups=groups)
    width_grouped = ci_grouped["auc"][1] - ci_grouped["auc"][0]
    assert width_grouped > 1.5 * (ci4["auc"][1] - ci4["auc"][0])


def test_report_with_ci_is_the_report_plus_its_bootstrap():
    """The one report-with-intervals (evaluate's video and frame rows, the benchmark's mri_mean
    row) equals binary_report + bootstrap_ci computed separately, figure for figure."""
    rng = np.random.default_rng(3)
    n = 120
    y = rng.integers(0, 2, n)
    s = np.clip(rng.random(n) * 0.6 + 0.35 * y, 0, 1)
    decided = s >= 0.45  # a video rule's own decisions
    groups = np.repeat(np.arange(n // 4), 4)

    def previous(threshold=0.5, y_pred=None, groups=None, n_boot=1000, seed=0):
        report = binary_report(y, s, threshold, y_pred=y_pred)
        if n_boot > 0:
            report["ci95"] = {k: list(v) for k, v in bootstrap_ci(
                y, s, threshold, n_boot=n_boot, seed=seed, groups=groups,
                y_pred=y_pred).items()}
        return report

    for kwargs in ({"y_pred": decided, "n_boot": 60},
                   {"threshold": 0.7, "groups": groups, "n_boot": 60},
                   {"n_boot": 40, "seed": 5}, {"n_boot": 0}):
        got = report_with_ci(y, s, **kwargs)
        # json text: NaN (the threshold of a rule's decisions) compares equal to itself
        assert json.dumps(got, sort_keys=True) == json.dumps(previous(**kwargs), sort_keys=True)
        assert ("ci95" in got) == (kwargs["n_boot"] > 0)
    ci = report_with_ci(y, s, y_pred=decided, n_boot=60)["ci95"]
    assert set(ci) == set(bootstrap_ci(y, s, n_boot=1))
    assert all(isinstance(v, list) and len(v) == 2 for v in ci.values())
