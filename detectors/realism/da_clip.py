"""DA-CLIP: DREAM's description-aligned CLIP regressor of deepfake realism (MOS).

Source: ``../shared/seeds/001_94b60dc8b37b616d.txt``, section IV (Eqs. 1-7, Figs. 8-9).

* Visual branch: every frame of a clip goes through CLIP's image encoder; mean and std pooling
  over the frames, **summed** (DREAM), give the video representation ``x``.
* Textual branch: every sentence describing the video (from a user CSV, see
  :func:`read_descriptions`) goes through CLIP's text encoder; their mean is ``t``.
* One unified regressor (a linear layer) predicts MOS from either ``x`` or ``t``.
* Loss (Eq. 7): ``L_V + L_T + lambda * L_sim``, ``L_V``/``L_T`` the regression loss of Eq. 5
  (``norm_in_norm_l1 + kl_pred_target`` in :mod:`detectors.realism.losses`, DREAM's forms),
  ``L_sim`` the cosine term of Eq. 6, ``lambda = 0.2``.
* Explanation (Fig. 9): the top-K training videos whose text representation is closest to the
  query's visual one, with their sentences (:class:`DescriptionIndex`).

Where this departs from DREAM (stated, chosen for the library):

* DREAM's visual encoder is OPDAI's Swin-V2 (pretrained for deepfake detection) with a linear
  projection to CLIP's text width; here it is the CLIP model's own image tower (already
  projected to the shared width), so one local CLIP checkpoint is all that is needed. Any
  module with ``encode_image`` / ``encode_text`` can be passed to :class:`DaClip`.
* Eq. 6 writes ``1 - sum_i cos(x_i, t_i)``; we use ``1 - mean_i cos(x_i, t_i)`` so the term
  stays in [0, 2] whatever the batch size (the sum makes it scale with N and go negative).
* Std pooling over frames is the population std (1/n), as :mod:`detectors.realism.model`.

Command: ``mrigan train-realism --config configs/realism_da_clip.yaml`` (``model.name:
da-clip``; the pipeline side is :mod:`detectors.realism.da_clip_train`), then
``mrigan evaluate-realism``.

Optional extra ``mrigan[clip]`` (``open_clip_torch``). Weights come from a local file only
(:func:`build_clip`): nothing is downloaded at run time; the tokenizer is open_clip's built-in
BPE (its vocabulary ships inside the package), so models whose tokenizer lives on the Hugging
Face hub are refused.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from detectors.backbones import WeightsError, read_state_dict
from detectors.model import fp32_head
from detectors.realism.losses import build_loss
from mrigan.errors import InputValueError, MriganError

#: DREAM's regression loss (Eq. 5) and similarity weight (Eq. 7).
DREAM_REGRESSION = "norm_in_norm_l1 + kl_pred_target"
DREAM_LAMBDA = 0.2


class DescriptionsError(MriganError, ValueError):
    """A descriptions CSV that is missing, malformed or empty."""


class ClipExtraError(MriganError, ImportError):
    """DA-CLIP asked for without the optional ``open_clip_torch`` package."""


def require_open_clip():
    try:
        import open_clip
    except ImportError as exc:
        raise ClipExtraError("DA-CLIP needs the optional open_clip_torch package: "
                             "pip install 'mrigan[clip]' (or pip install open_clip_torch)") from exc
    return open_clip


class _QuietRandomInit(logging.Filter):
    """Drops open_clip's "No pretrained weights loaded" warning when local weights follow."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()


def build_clip(model: str | Mapping, weights: str | os.PathLike | None = None) -> nn.Module:
    """A CLIP model from open_clip: ``model`` is an architecture name (``"ViT-B-32"``) or a
    config mapping ``{"embed_dim", "vision_cfg", "text_cfg"}`` (tests use a tiny one).

    ``weights``: a local ``.safetensors`` / ``.pt`` state dict; None keeps the random
    initialisation. Never downloads.
    """
    open_clip = require_open_clip()
    if isinstance(model, Mapping):
        net = open_clip.CLIP(**dict(model))
    else:
        quiet = _QuietRandomInit()  # with local weights, loaded just below
        if weights:
            logging.getLogger().addFilter(quiet)
        try:
            net = open_clip.create_model(str(model), pretrained=None, pretrained_text=False)
        finally:
            logging.getLogger().removeFilter(quiet)
    if weights:
        state = read_state_dict(weights)
        name = repr(model) if isinstance(model, str) else "of the configured architecture"
        own = net.state_dict()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
                  if k in state and tuple(state[k].shape) != tuple(v.shape)]
        if missing or unexpected or shapes:
            raise WeightsError(f"does not fit CLIP {name}: {len(missing)} missing key(s) "
                               f"{missing[:5]}, {len(unexpected)} unexpected key(s) "
                               f"{unexpected[:5]}, {len(shapes)} of another shape {shapes[:3]}",
                               path=weights)
        net.load_state_dict(state)
    return net


def build_tokenizer(context_length: int = 77):
    """open_clip's built-in BPE tokenizer (no download): ``texts -> (n, context_length)``."""
    return require_open_clip().tokenizer.SimpleTokenizer(context_length=context_length)


def read_descriptions(path: str | os.PathLike) -> dict[str, list[str]]:
    """A CSV with columns ``video,description`` (one sentence per row, several rows per video)
    -> ``{video: [sentences]}`` in file order. Blank descriptions are skipped."""
    path = Path(path)
    if not path.is_file():
        raise DescriptionsError("descriptions CSV not found", path=path)
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields = set(reader.fieldnames or ())
        if not {"video", "description"} <= fields:
            raise DescriptionsError(f"needs columns video,description; found {sorted(fields)}",
                                    path=path)
        out: dict[str, list[str]] = {}
        for row in reader:
            video, text = (row["video"] or "").strip(), (row["description"] or "").strip()
            if video and text:
                out.setdefault(video, []).append(text)
    if not out:
        raise DescriptionsError("no (video, description) rows", path=path)
    return out


def temporal_mean_plus_std(features: torch.Tensor) -> torch.Tensor:
    """``(N, T, D)`` -> ``(N, D)``: mean + population std over T (DREAM: pooled, then summed)."""
    if features.shape[1] < 2:
        return features.mean(dim=1)
    return features.mean(dim=1) + features.std(dim=1, correction=0)


class DaClip(nn.Module):
    """CLIP with a unified MOS regressor on the shared image/text space.

    ``forward(frames)`` is the visual branch alone (inference): ``(N, T, 3, H, W)`` -> ``(N,)``
    MOS; it also takes the realism models' batch ``{"plain": frames}`` (``mrigan
    train-realism`` with ``model.name: da-clip``). ``loss(frames, tokens, sentence_mask, mos)``
    is Eq. 7 for training.

    ``pixel_mean`` / ``pixel_std``: when given, frames in [0, 1] are standardised with them
    before the image encoder (CLIP's own statistics for pretrained weights); None feeds the
    frames as they are. ``descriptions``: the training videos' sentences (``{video:
    [sentences]}``), kept with the model for the top-K explanation (:class:`DescriptionIndex`).
    """

    def __init__(self, clip: nn.Module, embed_dim: int, mos_centre: float = 3.0,
                 lambda_sim: float = DREAM_LAMBDA, regression: str = DREAM_REGRESSION,
                 pixel_mean: Sequence[float] | None = None,
                 pixel_std: Sequence[float] | None = None) -> None:
        super().__init__()
        self.clip = clip
        self.regressor = nn.Linear(embed_dim, 1)
        with torch.no_grad():
            self.regressor.bias.fill_(float(mos_centre))
        self.lambda_sim = float(lambda_sim)
        self.regression = build_loss(regression)
        self.normalise = pixel_mean is not None and pixel_std is not None
        stats = (pixel_mean, pixel_std) if self.normalise else ((0.0,) * 3, (1.0,) * 3)
        self.register_buffer("pixel_mean", torch.tensor(stats[0]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(stats[1]).view(1, 3, 1, 1), persistent=False)
        self.descriptions: dict[str, list[str]] = {}

    def video_embedding(self, frames: torch.Tensor | Mapping[str, torch.Tensor]) -> torch.Tensor:
        if isinstance(frames, Mapping):
            frames = frames["plain"]
        n, t = frames.shape[:2]
        size = getattr(getattr(self.clip, "visual", None), "image_size", None)
        if isinstance(size, int):
            size = (size, size)
        if size is not None and tuple(frames.shape[-2:]) != tuple(size):
            raise InputValueError(f"frames are {frames.shape[-2]}x{frames.shape[-1]} px but the "
                                  f"CLIP model takes {size[0]}x{size[1]} (data.image_size)")
        x = frames.flatten(0, 1)
        if self.normalise:
            x = (x - self.pixel_mean.to(x.dtype)) / self.pixel_std.to(x.dtype)
        feats = self.clip.encode_image(x).float()
        return temporal_mean_plus_std(feats.view(n, t, -1))

    def pooled_features(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The video representation ``x`` of a realism batch (the frozen-feature baseline's
        features when this model is the one configured)."""
        return self.video_embedding(batch)

    def text_embedding(self, tokens: torch.Tensor, sentence_mask: torch.Tensor) -> torch.Tensor:
        """``tokens`` ``(N, M, L)``, ``sentence_mask`` ``(N, M)`` bool -> mean over real
        sentences ``(N, D)``."""
        n, m = tokens.shape[:2]
        feats = self.clip.encode_text(tokens.flatten(0, 1)).float().view(n, m, -1)
        w = sentence_mask.to(feats.dtype)[..., None]
        return (feats * w).sum(1) / w.sum(1).clamp_min(1.0)

    def regress(self, embedding: torch.Tensor) -> torch.Tensor:
        """MOS from an embedding; the linear regressor runs in fp32 under any autocast (a bf16
        MOS near 3 has steps of 1/64: see :mod:`detectors.realism.model`)."""
        return fp32_head(self.regressor, embedding).squeeze(1)

    def forward(self, frames: torch.Tensor | Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.regress(self.video_embedding(frames))

    def loss(self, frames: torch.Tensor, tokens: torch.Tensor, sentence_mask: torch.Tensor,
             mos: torch.Tensor) -> dict[str, torch.Tensor]:
        """Eq. 7: ``{"total", "visual", "textual", "sim"}``."""
        x = self.video_embedding(frames)
        t = self.text_embedding(tokens, sentence_mask)
        visual = self.regression(self.regress(x), mos)
        textual = self.regression(self.regress(t), mos)
        sim = 1.0 - F.cosine_similarity(x, t, dim=1).mean()
        return {"total": visual + textual + self.lambda_sim * sim, "visual": visual,
                "textual": textual, "sim": sim}


def tokenize_descriptions(tokenizer, sentences: Sequence[Sequence[str]],
                          max_sentences: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-video sentence lists -> ``(tokens (N, M, L), mask (N, M))``, padded to the longest
    list (or cut at ``max_sentences``)."""
    lists = [list(s)[:max_sentences] if max_sentences else list(s) for s in sentences]
    m = max(1, max(len(s) for s in lists))
    rows, mask = [], torch.zeros(len(lists), m, dtype=torch.bool)
    for i, s in enumerate(lists):
        mask[i, : len(s)] = True
        rows.append(tokenizer(s + [""] * (m - len(s))))
    return torch.stack(rows), mask


@dataclass
class Retrieved:
    video: str
    similarity: float
    sentences: list[str]


class DescriptionIndex:
    """Text representations of the training videos, for top-K retrieval (DREAM Fig. 9)."""

    def __init__(self, videos: Sequence[str], embeddings: torch.Tensor,
                 sentences: Sequence[Sequence[str]]) -> None:
        if len(videos) != len(embeddings) or len(videos) != len(sentences):
            raise ValueError("videos, embeddings and sentences must have the same length")
        self.videos = list(videos)
        self.embeddings = F.normalize(embeddings.detach().float(), dim=1)
        self.sentences = [list(s) for s in sentences]

    @classmethod
    @torch.no_grad()
    def build(cls, model: DaClip, tokenizer, descriptions: Mapping[str, Sequence[str]],
              batch_size: int = 16) -> DescriptionIndex:
        videos = list(descriptions)
        embs = []
        for i in range(0, len(videos), batch_size):
            chunk = [descriptions[v] for v in videos[i: i + batch_size]]
            tokens, mask = tokenize_descriptions(tokenizer, chunk)
            param = next(model.parameters())
            embs.append(model.text_embedding(tokens.to(param.device), mask.to(param.device)).cpu())
        return cls(videos, torch.cat(embs), [descriptions[v] for v in videos])

    @torch.no_grad()
    def retrieve(self, model: DaClip, frames: torch.Tensor, k: int = 3) -> list[list[Retrieved]]:
        """For each query clip ``(N, T, 3, H, W)``: the ``k`` closest training videos by cosine
        of the query's visual representation to their text representations."""
        return self.nearest(model.video_embedding(frames), k)

    def nearest(self, queries: torch.Tensor, k: int = 3) -> list[list[Retrieved]]:
        """The ``k`` closest training videos to each visual representation ``(N, D)``."""
        q = F.normalize(torch.as_tensor(queries).detach().float().cpu(), dim=1)
        sims = q @ self.embeddings.T
        top = sims.topk(min(k, len(self.videos)), dim=1)
        return [[Retrieved(self.videos[j], float(s), self.sentences[j])
                 for s, j in zip(vals.tolist(), idx.tolist(), strict=True)]
                for vals, idx in zip(top.values, top.indices, strict=True)]
