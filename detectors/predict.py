"""Score a dataset with a detector: one fake probability per unit (face or clip).

``channels_last`` (``train.channels_last`` of detector training; :class:`detectors.inference.
Detector`): ``auto`` is :data:`CHANNELS_LAST_ON_CUDA` on CUDA and off elsewhere. The CUDA
choice is not measured yet; ``bench/detect.py --device cuda`` times fp32 / bf16 /
channels_last / bf16+channels_last for inference and for a training step (issue 14 goal 6)
and says which ``auto`` should pick.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from detectors.inputs import InputAdapter
from mrigan import distributed
from mrigan.device import autocast, resolve_switch

#: ``channels_last: auto`` on CUDA (what training and evaluation have done so far; unmeasured)
CHANNELS_LAST_ON_CUDA = True


def resolve_channels_last(device: torch.device, setting: str | bool | None = "auto") -> bool:
    """``auto`` (or ``None``): :data:`CHANNELS_LAST_ON_CUDA` on CUDA, off on other devices."""
    auto = device.type == "cuda" and CHANNELS_LAST_ON_CUDA
    return auto if setting is None else resolve_switch(setting, auto, "train.channels_last")


def forward_batch(model: torch.nn.Module, adapter: InputAdapter, batch: dict,
                  device: torch.device, precision: str = "fp32",
                  channels_last: bool | None = None) -> torch.Tensor:
    """Logits of one collated batch: move, adapt (plain / MRI), run the model. 4-D inputs go
    channels_last when ``channels_last`` (``None``: the ``auto`` choice on ``device``)."""
    images = batch["image"].to(device, non_blocking=True)
    mask = batch.get("mask")
    mask = mask.to(device) if mask is not None else None
    inputs = adapter(images)
    if resolve_channels_last(device, channels_last) and inputs.ndim == 4:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    with autocast(device, precision):
        return model(inputs, mask).float()


@torch.no_grad()
def predict_probs(model: torch.nn.Module, adapter: InputAdapter, dataset: Dataset, *,
                  batch_size: int = 64, device: torch.device | str = "cpu",
                  precision: str = "fp32", workers: int = 0,
                  channels_last: bool | None = None) -> np.ndarray:
    """Fake probabilities of every item of ``dataset``, in dataset order.

    Under DDP each rank scores its share and the shares are gathered, so every rank returns
    the full array.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    indices = distributed.shard_indices(range(len(dataset)))
    batches = [indices[i:i + batch_size] for i in range(0, len(indices), batch_size)]
    loader = DataLoader(dataset, batch_sampler=batches, num_workers=workers,
                        pin_memory=device.type == "cuda", generator=torch.Generator())
    got_idx, got_p = [], []
    for batch in loader:
        got_p.append(torch.sigmoid(forward_batch(model, adapter, batch, device, precision,
                                                   channels_last)).cpu())
        got_idx.append(batch["index"])
    model.train(was_training)
    idx = torch.cat(got_idx).numpy() if got_idx else np.zeros(0, np.int64)
    probs = torch.cat(got_p).numpy().astype(np.float64) if got_p else np.zeros(0)
    out = np.full(len(dataset), np.nan)
    for part_idx, part_p in distributed.all_gather_object((idx, probs)):
        out[part_idx] = part_p
    if np.isnan(out).any():
        raise RuntimeError(f"{int(np.isnan(out).sum())} item(s) were not scored")
    return out
