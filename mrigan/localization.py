"""How well predicted MRIs say *whether* a face is fake and *where*, beside two baselines.

Issue 21 found that the generators it trained said a little about whether a face was fake and
nothing about where, that a constant map (the mean MRI of the training fakes) beat all of them
at localization, and that the mean SSIM over fakes and reals together, which picked ``best.pt``,
rewarded black maps (a real face's true MRI is black). So a generator is judged here by figures
that a constant map cannot win by being constant, and always beside the two baselines:

* **all-black**: every map 0 (what a collapsed generator draws);
* **mean map**: every face gets the same map, the mean true MRI of the *training* fakes (the
  prior a generator should at least learn; :func:`mean_fake_map`).

Figures (:func:`localization_figures`), on a held-out sample with labels (1 = fake):

* ``fake_ssim``: mean SSIM (data range 1) of predicted vs true MRI over fakes only;
* ``pixel_auc``: ROC AUC of the predicted MRI value (mean over channels) against the
  true-MRI mask (true MRI > ``mask_threshold``, 0.1) over the pixels of fake faces;
* ``face_auc``: ROC AUC of each face's mean predicted MRI, fakes against reals: any constant
  map scores exactly 0.5 here;
* ``real_mean``: the mean predicted MRI of reals (should be near 0);
* each figure also for ``black`` and ``mean_map``, and ``select``, the checkpoint selection
  figure: ``(face_auc + pixel_auc) / 2``. The mean map scores ``(0.5 + its pixel AUC) / 2``
  on it and a generator only beats it by also telling fakes from reals.

:func:`roc_auc` is the one ROC AUC of the library (Mann-Whitney U, ties count one half);
:mod:`detectors.metrics` uses it too.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch
from scipy.stats import rankdata

from mrigan import perceptual

#: A pixel belongs to the manipulated region when its true MRI (mean over channels) exceeds this.
MASK_THRESHOLD = 0.1

#: The figures :func:`localization_figures` returns for a predictor and the baselines.
FIGURES = ("fake_ssim", "pixel_auc", "face_auc", "real_mean", "select")


def roc_auc(y: np.ndarray, s: np.ndarray) -> float:
    """Area under the ROC curve as the Mann-Whitney U statistic (ties count one half); NaN
    when one class is absent."""
    y = np.asarray(y).ravel()
    s = np.asarray(s, dtype=np.float64).ravel()
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = rankdata(s)
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def mean_fake_map(mris: Iterable[torch.Tensor], labels: Iterable[int]) -> torch.Tensor:
    """The mean true MRI ``(3, H, W)`` of the fakes among ``(mri, label)`` pairs (the mean-map
    baseline and a generator's prior); a ValueError when there is no fake."""
    total, n = None, 0
    for mri, label in zip(mris, labels, strict=True):
        if int(label) != 1:
            continue
        mri = mri.float()
        total = mri.clone() if total is None else total + mri
        n += 1
    if total is None:
        raise ValueError("mean_fake_map: no fake among the given MRIs")
    return total / n


def _figures(pred: torch.Tensor, true: torch.Tensor, labels: torch.Tensor,
             mask_threshold: float) -> dict[str, float]:
    fakes, reals = labels == 1, labels == 0
    out: dict[str, float] = {}
    if fakes.any():
        out["fake_ssim"] = float(perceptual.mean_ssim(pred[fakes], true[fakes],
                                                      data_range=1.0).mean())
        mask = (true[fakes].mean(1) > mask_threshold).flatten().numpy()
        out["pixel_auc"] = roc_auc(mask, pred[fakes].mean(1).flatten().numpy())
    else:
        out["fake_ssim"] = out["pixel_auc"] = math.nan
    per_face = pred.flatten(1).mean(1).numpy()
    out["face_auc"] = roc_auc(labels.numpy(), per_face)
    out["real_mean"] = float(per_face[reals.numpy()].mean()) if reals.any() else math.nan
    parts = [out["face_auc"], out["pixel_auc"]]
    out["select"] = float(np.mean(parts)) if all(math.isfinite(p) for p in parts) else math.nan
    return out


def _checked(pred: torch.Tensor, true: torch.Tensor, labels) -> tuple[torch.Tensor, ...]:
    pred, true = pred.detach().float().cpu(), true.detach().float().cpu()
    labels = torch.as_tensor(labels).cpu().long()
    if pred.shape != true.shape or pred.dim() != 4 or labels.shape != pred.shape[:1]:
        raise ValueError(f"expected (N, 3, H, W) predictions and true MRIs and (N,) labels, got "
                         f"{tuple(pred.shape)}, {tuple(true.shape)}, {tuple(labels.shape)}")
    return pred, true, labels


@torch.no_grad()
def baseline_figures(true: torch.Tensor, labels: torch.Tensor,
                     mean_map: torch.Tensor | None = None,
                     mask_threshold: float = MASK_THRESHOLD) -> dict[str, float]:
    """``black_<figure>`` and, with ``mean_map`` (``(3, H, W)``), ``mean_map_<figure>``: the
    baselines' figures on a sample. They do not depend on any generator, so a sample scored
    again and again (the GAN's held-out evaluations) computes them once."""
    true, _, labels = _checked(true, true, labels)
    baselines = {"black": torch.zeros_like(true)}
    if mean_map is not None:
        baselines["mean_map"] = mean_map.detach().float().cpu().expand_as(true).contiguous()
    out: dict[str, float] = {}
    for name, maps in baselines.items():
        out.update({f"{name}_{k}": v for k, v in _figures(maps, true, labels,
                                                          mask_threshold).items()})
    return out


@torch.no_grad()
def localization_figures(pred: torch.Tensor, true: torch.Tensor, labels: torch.Tensor,
                         mean_map: torch.Tensor | None = None,
                         mask_threshold: float = MASK_THRESHOLD, *,
                         baselines: dict[str, float] | None = None) -> dict[str, float]:
    """The module's figures for ``pred`` (``(N, 3, H, W)`` in [0, 1]) against ``true`` MRIs,
    ``labels`` (N,) with 1 = fake, plus ``black_<figure>`` and, with ``mean_map`` (``(3, H, W)``,
    e.g. :func:`mean_fake_map` of the training set), ``mean_map_<figure>``
    (:func:`baseline_figures`; ``baselines``: those figures of this sample, already computed)."""
    pred, true, labels = _checked(pred, true, labels)
    out = _figures(pred, true, labels, mask_threshold)
    out.update(baselines if baselines is not None
               else baseline_figures(true, labels, mean_map, mask_threshold))
    return out


__all__ = ["FIGURES", "MASK_THRESHOLD", "baseline_figures", "localization_figures", "mean_fake_map",
           "roc_auc"]
