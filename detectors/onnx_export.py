"""A trained frame detector as ONNX (``mrigan export-onnx runs/det/checkpoints/best.pt``).

The graph takes ``images``: float32 (batch, 3, S, S) in [0, 1] at the detector's training size
S (a face crop for a plain detector, its MRI for an MRI detector; the ImageNet normalisation
is inside the graph) and gives ``logit`` (batch,) and ``p_fake`` = sigmoid(logit) (batch,).
EfficientNet backbones are exported with their plain swish (``x * sigmoid(x)``): the
memory-efficient one is a custom autograd function; torch 2.14's exporter inlines it (the same
graph, measured), but exporters that do not emit an operator onnxruntime cannot run.
Temporal (clip) detectors are not exported. See :mod:`mrigan.onnx_export` for the exporter,
the header in the file and the sidecar beside it.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from detectors.inference import detector_from_checkpoint
from mrigan import __version__
from mrigan.checkpoint import CheckpointError, CheckpointFile, read_checkpoint
from mrigan.config import to_dict
from mrigan.onnx_export import (
    check_inputs,
    check_output,
    checked_parity,
    export_record,
    module_to_onnx,
    write_onnx,
)

ONNX_FORMAT = "mrigan-detector-onnx/1"


class DetectorScores(nn.Module):
    """A frame detector as exported: images in [0, 1] -> (logit, P(fake))."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logit = self.model(images).float()
        return logit, torch.sigmoid(logit)


def plain_swish(model: nn.Module) -> nn.Module:
    """Switch every EfficientNet in ``model`` to its exportable swish (same values)."""
    for module in model.modules():
        if hasattr(module, "set_swish"):
            module.set_swish(memory_efficient=False)
    return model


def export_detector_onnx(checkpoint: str | os.PathLike | CheckpointFile,
                         out: str | os.PathLike, *,
                         overwrite: bool = False) -> tuple[Path, Path, float]:
    """Write a ``mrigan train-detector`` checkpoint as ``out`` (.onnx) + ``out``.json, after
    checking it against PyTorch on 3 seeded images at another batch size than the traced one;
    returns both paths and that largest |ONNX - torch| over both outputs.

    ``checkpoint``: its path, or the file already read (:func:`mrigan.checkpoint.read_checkpoint`,
    what ``mrigan export-onnx`` passes after telling a detector from a generator): the file is
    read once either way, the weights and the SHA-256 the sidecar records from the same bytes."""
    check_output(out, overwrite=overwrite)
    if not isinstance(checkpoint, CheckpointFile):
        checkpoint = read_checkpoint(checkpoint)
    source = checkpoint.path
    det = detector_from_checkpoint(checkpoint.state, source, "cpu", precision="fp32",
                                   channels_last=False)
    if getattr(det.model, "temporal", False):
        raise CheckpointError("a temporal (clip) detector: ONNX export covers frame detectors",
                              source)
    scores = DetectorScores(plain_swish(det.model.float())).eval()
    size = det.image_size
    header = {"format": ONNX_FORMAT, "input_kind": det.input_name, "image_size": size,
              "backbone": det.config.model.backbone, "mrigan_version": __version__,
              "input": f"images: float32 (batch, 3, {size}, {size}) RGB in [0, 1] "
                       f"({'MRIs' if det.input_name == 'mri' else 'face crops'})",
              "output": "logit: float32 (batch,); p_fake: float32 (batch,) = sigmoid(logit)"}
    data = module_to_onnx(scores, check_inputs(size, batch=2), input_name="images",
                          output_names=("logit", "p_fake"), header=header)
    diff = checked_parity(scores, data, header, size, source)
    sidecar = {**header, "config": to_dict(det.config),
               **export_record(source, diff, checkpoint.sha256)}
    onnx_path, side = write_onnx(out, data, sidecar, overwrite=overwrite)
    return onnx_path, side, diff
