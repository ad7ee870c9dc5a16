"""Training objectives for MOS regression, chosen by name; weighted sums by a small expression.

All losses take ``(pred, target)`` as 1-D float tensors of one batch and return a scalar.
Correlation-type losses (Norm-in-Norm, PLCC, KL, rank) only see the batch's relative order
and spread, so they are usually mixed with an absolute one (RMSE/MAE) when the scale of the
prediction matters:

>>> loss = build_loss("rmse + 0.5*rank")          # or {"rmse": 1.0, "rank": 0.5}

Names: ``rmse``, ``mae``, ``norm_in_norm`` (Li et al., ACM MM 2020, with p = q = 2),
``kl`` (KL divergence between batch-softmax-normalised MOS and predictions), ``plcc``
(``(1 - PLCC) / 2``), ``rank`` (pairwise hinge on every ordered pair of the batch).

DREAM's forms (``../shared/seeds/001_94b60dc8b37b616d.txt``, Eqs. 1-5) differ from two of ours,
so both are offered by name; the defaults (``norm_in_norm``, ``kl``) are unchanged:

* ``norm_in_norm`` (default): Li et al.'s p = q = 2 form (loss0 / loss1 with the scale s);
* ``norm_in_norm_l1``: ``sum_i |S^_i - S_i|``, S the centred, 2-normed batch - DREAM Eqs. 1-2;
* ``kl`` (default, also named ``kl_target_pred``): KL(softmax(MOS) || softmax(pred));
* ``kl_pred_target``: KL(softmax(pred) || softmax(MOS)) - DREAM Eqs. 3-4.

DREAM's regression loss (Eq. 5, used by OPDAI and both DA-CLIP branches) is therefore
``build_loss("norm_in_norm_l1 + kl_pred_target")``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mrigan.registry import Registry

LOSSES = Registry("realism loss")
_EPS = 1e-8

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _flat(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    pred, target = pred.reshape(-1), target.reshape(-1).to(pred.dtype)
    if pred.shape != target.shape:
        raise ValueError(f"pred has {pred.numel()} values, target {target.numel()}")
    return pred, target


@LOSSES.register("rmse")
def rmse_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    pred, target = _flat(pred, target)
    # eps inside the root keeps the gradient finite when the batch is fitted exactly.
    return torch.sqrt(F.mse_loss(pred, target) + _EPS)


@LOSSES.register("mae")
def mae_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    pred, target = _flat(pred, target)
    return F.l1_loss(pred, target)


def _centre_and_normalise(x: torch.Tensor, q: float) -> torch.Tensor:
    x = x - x.mean()
    return x / (torch.linalg.vector_norm(x, ord=q) + _EPS)


@LOSSES.register("norm_in_norm")
def norm_in_norm_loss(pred: torch.Tensor, target: torch.Tensor, p: float = 2.0, q: float = 2.0,
                      alpha: tuple[float, float] = (1.0, 1.0)) -> torch.Tensor:
    """Norm-in-Norm: compare predictions and MOS after centring and q-norm normalisation.

    ``loss0 = (||p' - t'||_p / s)^p`` and ``loss1 = (||rho p' - t'||_p / s)^p`` with
    ``s = 2^max(1, 1/q) * N^max(0, 1/p - 1/q)`` and ``rho`` the cosine of the normalised
    vectors; the result is their alpha-weighted mean. With p = q = 2 this is
    ``((1 - PLCC) / 2 * a0 + (1 - PLCC^2) / 4 * a1) / (a0 + a1)``, which the tests check.
    """
    pred, target = _flat(pred, target)
    n = pred.numel()
    if n < 2:
        raise ValueError("norm_in_norm needs a batch of at least 2")
    pn, tn = _centre_and_normalise(pred, q), _centre_and_normalise(target, q)
    scale = 2.0 ** max(1.0, 1.0 / q) * n ** max(0.0, 1.0 / p - 1.0 / q)
    loss0 = (torch.linalg.vector_norm(pn - tn, ord=p) / scale) ** p
    rho = (pn * tn).sum() / (pn.norm() * tn.norm() + _EPS)
    loss1 = (torch.linalg.vector_norm(rho * pn - tn, ord=p) / scale) ** p
    return (alpha[0] * loss0 + alpha[1] * loss1) / (alpha[0] + alpha[1])


@LOSSES.register("kl_target_pred")
@LOSSES.register("kl")
def kl_softmax_loss(pred: torch.Tensor, target: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(softmax(MOS / T) || softmax(pred / T)) over the batch: a listwise ranking objective.

    Also registered as ``kl_target_pred``; DREAM's Eq. 3 is the other direction
    (``kl_pred_target``)."""
    pred, target = _flat(pred, target)
    log_q = F.log_softmax(pred / temperature, dim=0)
    log_p = F.log_softmax(target / temperature, dim=0)
    return (log_p.exp() * (log_p - log_q)).sum()


@LOSSES.register("norm_in_norm_l1")
def norm_in_norm_l1_loss(pred: torch.Tensor, target: torch.Tensor, q: float = 2.0) -> torch.Tensor:
    """DREAM's Norm-in-Norm (Eqs. 1-2): ``sum_i |S^_i - S_i|``, where ``S`` is the batch's MOS
    centred and divided by its q-norm (q = 2 in DREAM) and ``S^`` the same of the predictions.

    A plain sum over the batch (no 1/N and no Li et al. scale ``s``), as DREAM writes it; our
    default ``norm_in_norm`` is Li et al.'s p = q = 2 form instead.
    """
    pred, target = _flat(pred, target)
    if pred.numel() < 2:
        raise ValueError("norm_in_norm_l1 needs a batch of at least 2")
    return (_centre_and_normalise(pred, q) - _centre_and_normalise(target, q)).abs().sum()


@LOSSES.register("kl_pred_target")
def kl_pred_target_loss(pred: torch.Tensor, target: torch.Tensor,
                        temperature: float = 1.0) -> torch.Tensor:
    """DREAM's KL loss (Eqs. 3-4): ``sum_i W^_i log(W^_i / W_i)`` = KL(softmax(pred) ||
    softmax(MOS)) over the batch (temperature 1 in DREAM). Our default ``kl`` is the reverse
    direction, KL(softmax(MOS) || softmax(pred))."""
    pred, target = _flat(pred, target)
    log_w_hat = F.log_softmax(pred / temperature, dim=0)
    log_w = F.log_softmax(target / temperature, dim=0)
    return (log_w_hat.exp() * (log_w_hat - log_w)).sum()


@LOSSES.register("plcc")
def plcc_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``(1 - PLCC) / 2`` in [0, 1]; differentiable, scale- and shift-invariant."""
    pred, target = _flat(pred, target)
    dp, dt = pred - pred.mean(), target - target.mean()
    r = (dp * dt).sum() / (dp.norm() * dt.norm() + _EPS)
    return (1.0 - r) / 2.0


@LOSSES.register("rank")
def pairwise_rank_loss(pred: torch.Tensor, target: torch.Tensor, margin: float = 0.0) -> torch.Tensor:
    """Mean hinge ``relu(margin - sign(t_i - t_j) (p_i - p_j))`` over pairs with t_i != t_j."""
    pred, target = _flat(pred, target)
    sign = torch.sign(target[:, None] - target[None, :])
    diff = pred[:, None] - pred[None, :]
    valid = sign != 0
    if not bool(valid.any()):
        return pred.sum() * 0.0  # all MOS equal: no order to learn, keep the graph
    return F.relu(margin - sign * diff)[valid].mean()


@dataclass(frozen=True)
class WeightedLoss:
    """``sum_k w_k * loss_k(pred, target)``; ``terms`` is ((name, weight), ...)."""

    terms: tuple[tuple[str, float], ...]

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = None
        for name, weight in self.terms:
            value = weight * LOSSES.get(name)(pred, target)
            total = value if total is None else total + value
        return total

    def parts(self, pred: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        """Each term's unweighted value, for logging."""
        with torch.no_grad():
            return {name: float(LOSSES.get(name)(pred, target)) for name, _ in self.terms}


_TERM = re.compile(r"^\s*(?:(?P<w>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*\*\s*)?(?P<name>[A-Za-z_]\w*)\s*$")


def parse_loss_spec(spec: str | Mapping[str, float]) -> tuple[tuple[str, float], ...]:
    """``"rmse + 0.5*rank"`` or ``{"rmse": 1, "rank": 0.5}`` -> ``(("rmse", 1.0), ("rank", 0.5))``."""
    if isinstance(spec, Mapping):
        items = [(str(k), float(v)) for k, v in spec.items()]
    else:
        items = []
        for part in str(spec).split("+"):
            m = _TERM.match(part)
            if not m:
                raise ValueError(f"loss spec {spec!r}: cannot read term {part.strip()!r}; "
                                 "write e.g. 'rmse + 0.5*rank'")
            items.append((m["name"], float(m["w"]) if m["w"] else 1.0))
    if not items:
        raise ValueError(f"loss spec {spec!r} names no loss")
    for name, _ in items:
        LOSSES.get(name)  # unknown names fail here, listing the known ones
    return tuple(items)


def build_loss(spec: str | Mapping[str, float]) -> WeightedLoss:
    return WeightedLoss(parse_loss_spec(spec))
