"""Realism metrics against SciPy and hand computations; losses against closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch

from detectors.realism import losses, metrics


def test_metrics_hand_computed():
    t, p = [1, 2, 3, 4, 5], [2, 1, 4, 3, 5]
    # Spearman by the textbook formula 1 - 6 sum d^2 / (n (n^2 - 1)) with d = [1,-1,1,-1,0].
    assert metrics.srcc(t, p) == pytest.approx(1 - 6 * 4 / (5 * 24))
    assert metrics.plcc(t, p) == pytest.approx(0.8)  # ranks equal values here
    assert metrics.rmse(t, p) == pytest.approx(math.sqrt(4 / 5))
    rep = metrics.mos_report(t, p)
    assert rep["score"] == pytest.approx((rep["plcc"] + rep["srcc"]) / 2)
    assert rep["n"] == 5 and {"plcc", "srcc", "rmse", "score"} <= set(rep)


@pytest.mark.parametrize("seed", range(5))
def test_metrics_match_scipy_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = 37
    t = np.round(rng.uniform(1, 5, n) * 5) / 5  # MOS on a 0.2 grid: many ties, like real labels
    p = t + rng.normal(0, 0.8, n)
    p[:6] = np.round(p[:6])  # ties in predictions too
    rep = metrics.mos_report(t, p)
    assert rep["plcc"] == pytest.approx(scipy.stats.pearsonr(t, p)[0], abs=1e-12)
    assert rep["srcc"] == pytest.approx(scipy.stats.spearmanr(t, p)[0], abs=1e-12)
    assert rep["rmse"] == pytest.approx(np.sqrt(np.mean((t - p) ** 2)), abs=1e-12)
    np.testing.assert_allclose(metrics.average_ranks(t), scipy.stats.rankdata(t, method="average"))


def test_metrics_constant_prediction_is_nan_and_bad_input_raises():
    assert math.isnan(metrics.plcc([1, 2, 3], [2, 2, 2]))
    assert math.isnan(metrics.srcc([1, 2, 3], [2, 2, 2]))
    with pytest.raises(ValueError, match="3 values"):
        metrics.plcc([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="NaN"):
        metrics.mos_report([1, 2, float("nan")], [1, 2, 3])


def test_multi_set_report_averages_over_sets_not_videos():
    a = ([1, 2, 3, 4], [1, 2, 3, 4])  # perfect
    b = ([1, 2, 3], [3, 2, 1])  # reversed
    rep = metrics.multi_set_report({"seen": a, "unseen": b})
    assert rep["sets"]["seen"]["score"] == pytest.approx(1.0)
    assert rep["sets"]["unseen"]["score"] == pytest.approx(-1.0)
    assert rep["average"]["score"] == pytest.approx(0.0)
    assert rep["average"]["n"] == 7


def _t(x):
    return torch.tensor(x, dtype=torch.float64)


def test_losses_closed_forms():
    p, t = _t([1.0, 2.0, 4.0, 3.5]), _t([2.0, 4.0, 3.0, 5.0])
    assert float(losses.rmse_loss(p, t)) == pytest.approx(math.sqrt(np.mean((p - t).numpy() ** 2)), rel=1e-6)
    assert float(losses.mae_loss(p, t)) == pytest.approx(np.mean(np.abs((p - t).numpy())))
    r = scipy.stats.pearsonr(p.numpy(), t.numpy())[0]
    assert float(losses.plcc_loss(p, t)) == pytest.approx((1 - r) / 2, abs=1e-7)
    # Norm-in-Norm with p = q = 2 reduces to functions of PLCC (see its docstring).
    expected = ((1 - r) / 2 + (1 - r ** 2) / 4) / 2
    assert float(losses.norm_in_norm_loss(p, t)) == pytest.approx(expected, abs=1e-7)
    assert float(losses.norm_in_norm_loss(p, t, alpha=(1.0, 0.0))) == pytest.approx((1 - r) / 2, abs=1e-7)
    # KL between batch softmaxes, against SciPy's entropy(p, q) = sum p log(p/q).
    ref = scipy.stats.entropy(scipy.special.softmax(t.numpy()), scipy.special.softmax(p.numpy()))
    assert float(losses.kl_softmax_loss(p, t)) == pytest.approx(ref, abs=1e-10)


def test_rank_loss_by_hand():
    # pairs (0,1) and (0,2) ordered right; (1,2) wrong by 0.5, counted in both directions.
    value = losses.pairwise_rank_loss(_t([0.0, 1.0, 0.5]), _t([1.0, 2.0, 3.0]))
    assert float(value) == pytest.approx(2 * 0.5 / 6)
    assert float(losses.pairwise_rank_loss(_t([1.0, 2.0, 3.0]), _t([1.0, 2.0, 3.0]))) == 0.0
    assert float(losses.pairwise_rank_loss(_t([1.0, 2.0]), _t([3.0, 3.0]))) == 0.0  # ties only


def test_weighted_sum_spec_and_errors():
    p, t = _t([1.0, 2.0, 4.0]), _t([2.0, 1.0, 5.0])
    loss = losses.build_loss("rmse + 0.5*rank + 2e-1 * plcc")
    assert loss.terms == (("rmse", 1.0), ("rank", 0.5), ("plcc", 0.2))
    want = losses.rmse_loss(p, t) + 0.5 * losses.pairwise_rank_loss(p, t) + 0.2 * losses.plcc_loss(p, t)
    assert float(loss(p, t)) == pytest.approx(float(want))
    assert losses.build_loss({"mae": 1, "kl": 3}).terms == (("mae", 1.0), ("kl", 3.0))
    with pytest.raises(KeyError, match="known: .*norm_in_norm"):
        losses.build_loss("rmse + huber")
    with pytest.raises(ValueError, match="cannot read term"):
        losses.build_loss("rmse + ")


@pytest.mark.parametrize("name", ["rmse", "mae", "norm_in_norm", "kl", "plcc", "rank"])
def test_each_loss_drives_free_scores_to_the_right_order(name):
    """Gradient descent on free per-video scores must learn the MOS order: the losses have
    usable gradients (not just the right value)."""
    g = torch.Generator().manual_seed(0)
    target = torch.rand(24, generator=g, dtype=torch.float64) * 4 + 1
    pred = torch.randn(24, generator=g, dtype=torch.float64).requires_grad_(True)
    fn = losses.build_loss(name)
    before = metrics.srcc(target.numpy(), pred.detach().numpy())
    opt = torch.optim.Adam([pred], lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        fn(pred, target).backward()
        opt.step()
    after = metrics.srcc(target.numpy(), pred.detach().numpy())
    assert after > 0.95 > before
