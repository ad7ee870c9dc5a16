"""DA-CLIP in the realism pipeline (``model.name: da-clip``): build, train, load, explain.

The model is :class:`detectors.realism.da_clip.DaClip`; everything around it is the realism
pipeline's own (data, split, :func:`detectors.realism.train.train_regressor` on
:mod:`mrigan.loop`, :func:`detectors.realism.evaluate.evaluate_run`). What DA-CLIP adds:

* ``model.backbone`` is an open_clip architecture name (``ViT-B-32``) or a JSON file of one
  (open_clip's model-config form ``{"embed_dim", "vision_cfg", "text_cfg"}``); ``model.weights``
  the local CLIP state dict. The architecture is stored in every checkpoint, so a run does not
  need the JSON file to be evaluated later.
* Frames are standardised with the CLIP model's pixel statistics (OpenAI's unless the model
  says otherwise) and must be ``data.image_size`` = the model's input size.
* :class:`DaClipTrainer` is the realism trainer with Eq. 7 as its loss: ``train.loss`` is
  ``L_V`` / ``L_T`` (DREAM: ``norm_in_norm_l1 + kl_pred_target``, the preset's), plus
  ``da_clip.lambda_sim`` times ``L_sim``. Each training clip's sentences (``da_clip.descriptions``,
  matched by label key, with or without the file extension) are tokenized once; a training
  clip without a description stops the run with the list of keys. ``da_clip.max_sentences``
  keeps the first M sentences of a video (0: all, as DREAM).
* The checkpoint keeps the training videos' sentences; evaluation builds the Fig. 9 index from
  them with the trained text tower and reports, for each test video, the ``da_clip.top_k``
  training videos whose text representation is closest to its visual one (averaged over the
  same ``sampler.test_draws`` sequences as the prediction).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import torch

from detectors.realism.clips import Clip
from detectors.realism.config import RealismConfig
from detectors.realism.da_clip import (
    DaClip,
    DescriptionIndex,
    DescriptionsError,
    build_clip,
    build_tokenizer,
    read_descriptions,
    require_open_clip,
    tokenize_descriptions,
)
from detectors.realism.model import RealismModelConfig
from detectors.realism.predict import clip_outputs
from detectors.realism.trainer import RegressorTrainer
from mrigan.config import ConfigError
from mrigan.device import autocast

Architecture = str | dict


def resolve_architecture(spec: str) -> Architecture:
    """``model.backbone`` of a da-clip model -> an open_clip name or a config mapping."""
    open_clip = require_open_clip()
    if spec.endswith(".json"):
        path = Path(spec)
        if not path.is_file():
            raise ConfigError("CLIP architecture file not found (model.backbone)", path)
        try:
            arch = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"unreadable CLIP architecture JSON ({exc})", path) from exc
        if not isinstance(arch, dict) or not {"embed_dim", "vision_cfg", "text_cfg"} <= set(arch):
            raise ConfigError("a CLIP architecture JSON needs embed_dim, vision_cfg and text_cfg",
                              path)
        return {k: arch[k] for k in ("embed_dim", "vision_cfg", "text_cfg")}
    if spec not in open_clip.list_models():
        raise ConfigError(f"model.backbone {spec!r} is not an open_clip architecture (e.g. "
                          "ViT-B-32) nor a .json file of one")
    return spec


def _arch_config(arch: Architecture) -> dict:
    return dict(arch) if isinstance(arch, Mapping) else require_open_clip().get_model_config(arch)


def input_size(arch: Architecture) -> int:
    size = _arch_config(arch)["vision_cfg"].get("image_size", 224)
    return int(size[0] if isinstance(size, (list, tuple)) else size)


def build_da_clip(model_cfg: RealismModelConfig, mos_centre: float = 3.0,
                  architecture: Architecture | None = None) -> DaClip:
    """A :class:`DaClip` of ``model.backbone`` with ``model.weights`` (local, never downloaded)."""
    arch = resolve_architecture(model_cfg.backbone) if architecture is None else architecture
    clip = build_clip(arch, weights=model_cfg.weights or None)
    stats = getattr(clip.visual, "preprocess_cfg", None) or {}
    open_clip = require_open_clip()
    model = DaClip(clip, int(_arch_config(arch)["embed_dim"]), mos_centre=mos_centre,
                   pixel_mean=tuple(stats.get("mean", open_clip.OPENAI_DATASET_MEAN)),
                   pixel_std=tuple(stats.get("std", open_clip.OPENAI_DATASET_STD)))
    model.architecture = arch
    return model


def load_da_clip(model_cfg: RealismModelConfig, state: Mapping[str, Any]) -> DaClip:
    """The trained model of a realism checkpoint (architecture and sentences stored in it)."""
    model = build_da_clip(model_cfg, state.get("mos_centre", 3.0),
                          architecture=state.get("clip_architecture"))
    model.load_state_dict(state["model"])
    model.descriptions = {k: list(v) for k, v in state.get("descriptions", {}).items()}
    return model


def check_da_clip(cfg: RealismConfig, where: str, training: bool = True) -> None:
    """Up-front checks of a da-clip config (before any data is read): open_clip installed,
    face inputs; for training also the architecture, its input size, that ``model.weights``
    fit it (one extra load of the weights) and the descriptions CSV."""
    require_open_clip()
    if cfg.model.inputs != "plain":
        raise ConfigError(f"{where}: model.name=da-clip sees face crops only: model.inputs must "
                          f"be plain, not {cfg.model.inputs!r}")
    if training:  # evaluation: the architecture is stored in the checkpoint
        arch = resolve_architecture(cfg.model.backbone)
        if input_size(arch) != cfg.data.image_size:
            raise ConfigError(f"{where}: data.image_size {cfg.data.image_size} does not match "
                              f"the CLIP model's input size {input_size(arch)} "
                              f"({cfg.model.backbone})")
        if cfg.model.weights:  # weights that do not fit fail here, before faces are extracted
            build_clip(arch, weights=cfg.model.weights)
        if not cfg.da_clip.descriptions:
            raise ConfigError(f"{where}: model.name=da-clip needs da_clip.descriptions (a CSV "
                              "video,description of the rated videos)")
        read_descriptions(cfg.da_clip.descriptions)


def _bare(key: str) -> str:
    name = PurePosixPath(key.replace("\\", "/"))
    stem = name.name.rsplit(".", 1)[0] if "." in name.name else name.name
    return str(name.with_name(stem))


def clip_descriptions(clips: Sequence[Clip], descriptions: Mapping[str, Sequence[str]],
                      path: str = "") -> dict[str, list[str]]:
    """``{clip key: sentences}``; a key matches a CSV video exactly or without extension."""
    bare = {_bare(k): list(v) for k, v in descriptions.items()}
    out, missing = {}, []
    for c in clips:
        found = descriptions.get(c.key) or bare.get(_bare(c.key))
        if found:
            out[c.key] = list(found)
        else:
            missing.append(c.key)
    if missing:
        raise DescriptionsError(f"{len(missing)} of {len(clips)} training videos have no "
                                f"description (first: {missing[:5]})", path=path or None)
    return out


class DaClipTrainer(RegressorTrainer):
    """The realism trainer with DREAM's Eq. 7: ``L_V + L_T + lambda * L_sim`` per batch."""

    def __init__(self, cfg: RealismConfig, model: DaClip, device: torch.device,
                 train_clips: Sequence[Clip]) -> None:
        super().__init__(cfg, model, device)
        model.regression = self.loss_fn  # L_V and L_T: train.loss (DREAM: Eq. 5)
        model.lambda_sim = float(cfg.da_clip.lambda_sim)
        path = cfg.da_clip.descriptions
        if not path:
            raise ConfigError("model.name=da-clip needs da_clip.descriptions (a CSV "
                              "video,description of the rated videos)")
        model.descriptions = clip_descriptions(train_clips, read_descriptions(path), path)
        tokenizer = build_tokenizer(int(model.clip.context_length))
        self.tokens, self.sentence_mask = tokenize_descriptions(
            tokenizer, [model.descriptions[c.key] for c in train_clips],
            cfg.da_clip.max_sentences or None)
        self.parts: list[dict[str, float]] = []

    def compute_loss(self, batch: dict) -> torch.Tensor:
        index = torch.as_tensor(batch["index"])
        frames = batch["plain"].to(self.device, non_blocking=True)
        tokens = self.tokens[index].to(self.device)
        mask = self.sentence_mask[index].to(self.device)
        with autocast(self.device, self.precision):
            parts = self.model.loss(frames, tokens, mask, batch["mos"].to(self.device))
        self.parts.append({k: float(parts[k].detach()) for k in ("visual", "textual", "sim")})
        return parts["total"].float()

    def start_epoch(self) -> None:
        super().start_epoch()
        self.parts = []

    def epoch_metrics(self) -> dict[str, float]:
        """Means over the epoch's batches of ``L_V``, ``L_T`` and ``L_sim`` (history, TensorBoard)."""
        return {f"loss_{k}": float(sum(p[k] for p in self.parts) / len(self.parts))
                for k in ("visual", "textual", "sim")} if self.parts else {}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "clip_architecture": self.model.architecture,
                "descriptions": self.model.descriptions}


@torch.no_grad()
def retrieve_descriptions(model: DaClip, cfg: RealismConfig, tests: Mapping[str, Sequence[Clip]],
                          device: torch.device) -> dict[str, list[dict]] | None:
    """DREAM Fig. 9: per test set and video, the ``da_clip.top_k`` training videos whose text
    representation is closest to the video's visual one, with their sentences (None when the
    model holds no training sentences)."""
    if not model.descriptions:
        return None
    model.eval()
    index = DescriptionIndex.build(model, build_tokenizer(int(model.clip.context_length)),
                                   model.descriptions)
    out = {}
    for name, clips in tests.items():
        emb = clip_outputs(model.pooled_features, clips, cfg.sampler, inputs="plain",
                           size=cfg.data.image_size, device=device, seed=cfg.train.seed,
                           precision=cfg.train.precision)
        hits = index.nearest(torch.from_numpy(emb), cfg.da_clip.top_k)
        out[name] = [{"video": c.key, "mos": float(c.mos),
                      "retrieved": [{"video": h.video, "similarity": round(h.similarity, 6),
                                     "sentences": h.sentences} for h in found]}
                     for c, found in zip(clips, hits, strict=True)]
    return out
