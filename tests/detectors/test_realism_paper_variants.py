"""The papers' variants as named options: DREAM's Norm-in-Norm (L1) and KL(pred || target),
and the ensemble paper's n-1 std pooling, each against a NumPy/SciPy reference."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch

from detectors.realism import losses
from detectors.realism.model import RealismModelConfig, RealismRegressor, temporal_pool


def _batch(seed: int, n: int = 9) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    target = rng.uniform(1, 5, n)
    return target + rng.normal(0, 0.7, n), target


def _dream_nin_reference(pred: np.ndarray, target: np.ndarray, q: float = 2.0) -> float:
    def norm(v):  # DREAM Eq. 2
        c = v - v.mean()
        return c / (np.abs(c) ** q).sum() ** (1 / q)

    return float(np.abs(norm(pred) - norm(target)).sum())  # Eq. 1


@pytest.mark.parametrize("seed", range(4))
def test_norm_in_norm_l1_is_dream_eq_1_2(seed):
    pred, target = _batch(seed)
    got = losses.LOSSES.get("norm_in_norm_l1")(torch.tensor(pred), torch.tensor(target))
    assert float(got) == pytest.approx(_dream_nin_reference(pred, target), rel=1e-7)  # eps 1e-8
    # ...and it is not Li et al.'s p = q = 2 form, our default
    assert float(got) != pytest.approx(float(losses.LOSSES.get("norm_in_norm")(
        torch.tensor(pred), torch.tensor(target))), rel=1e-3)


@pytest.mark.parametrize("seed", range(4))
def test_kl_directions_against_scipy(seed):
    pred, target = _batch(seed)
    w_hat, w = scipy.special.softmax(pred), scipy.special.softmax(target)
    p_t, t_t = torch.tensor(pred), torch.tensor(target)
    dream = losses.LOSSES.get("kl_pred_target")(p_t, t_t)  # DREAM Eq. 3: sum W^ log(W^ / W)
    assert float(dream) == pytest.approx(scipy.stats.entropy(w_hat, w), rel=1e-9)
    ours = losses.LOSSES.get("kl")(p_t, t_t)
    assert float(ours) == pytest.approx(scipy.stats.entropy(w, w_hat), rel=1e-9)
    assert losses.LOSSES.get("kl_target_pred") is losses.LOSSES.get("kl")
    assert float(dream) != pytest.approx(float(ours), rel=1e-3)  # the directions differ


def test_dream_eq_5_by_name_and_gradients():
    pred, target = _batch(7)
    p = torch.tensor(pred, requires_grad=True)
    loss = losses.build_loss("norm_in_norm_l1 + kl_pred_target")(p, torch.tensor(target))
    w_hat, w = scipy.special.softmax(pred), scipy.special.softmax(target)
    expected = _dream_nin_reference(pred, target) + scipy.stats.entropy(w_hat, w)
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-7)
    loss.backward()
    assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_std_pooling_population_and_sample_against_numpy():
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    arr = x.numpy()
    pop, sam = temporal_pool(x).numpy(), temporal_pool(x, "sample").numpy()
    np.testing.assert_allclose(pop[:, 3:], arr.std(axis=1, ddof=0), rtol=1e-12)
    np.testing.assert_allclose(sam[:, 3:], arr.std(axis=1, ddof=1), rtol=1e-12)
    np.testing.assert_allclose(sam[:, :3], arr.mean(axis=1), rtol=1e-12)
    np.testing.assert_array_equal(temporal_pool(x[:, :1], "sample")[:, 3:].numpy(), 0.0)
    with pytest.raises(ValueError):
        temporal_pool(x, "n-1")


def test_model_std_option_reaches_the_pooling(one_torch_thread):
    torch.manual_seed(0)
    batch = {"plain": torch.rand(2, 4, 3, 32, 32)}
    pop = RealismRegressor(RealismModelConfig(hidden=8)).eval()
    sam = RealismRegressor(RealismModelConfig(hidden=8, std="sample")).eval()
    sam.load_state_dict(pop.state_dict())
    with torch.no_grad():
        a, b = pop.pooled_features(batch), sam.pooled_features(batch)
    f = a.shape[1] // 2
    torch.testing.assert_close(b[:, f:], a[:, f:] * (4 / 3) ** 0.5)
    with pytest.raises(ValueError):
        RealismRegressor(RealismModelConfig(std="biased"))
