"""``mrigan export-onnx MODEL``: a generator or a frame detector as ONNX, for onnxruntime,
TensorRT, OpenVINO (optional extra: ``pip install 'mrigan[onnx]'``).

    mrigan export-onnx runs/mri_gan/generator.safetensors        # -> runs/mri_gan/generator.onnx
    mrigan export-onnx runs/detector_mri/checkpoints/best.pt --out detector_mri.onnx

MODEL: a generator (``.safetensors`` export, GAN checkpoint) or a ``mrigan train-detector``
checkpoint, told apart by the file. Writes ``OUT`` (opset 17, float32, dynamic batch axis) and
``OUT.json`` beside it (the source's sidecar with the model card, the ONNX facts, the parity
against PyTorch measured at export). An existing ``OUT`` is replaced only with ``--overwrite``.
Load an exported generator with ``MRIGenerator.load("generator.onnx")`` or run it in
``mrigan analyze --generator generator.onnx``; see :mod:`mrigan.onnx_export`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from detectors.onnx_export import export_detector_onnx
from detectors.train import CHECKPOINT_FORMAT as DETECTOR_FORMAT
from mrigan.checkpoint import CheckpointError, CheckpointFile, read_checkpoint
from mrigan.inference import export_generator_onnx
from mrigan.onnx_export import OPSET


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path,
                        help="generator (.safetensors, GAN .pt) or detector checkpoint (.pt)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output .onnx (default: MODEL with the suffix .onnx)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT")


def read_detector(path: Path) -> CheckpointFile | None:
    """A ``mrigan train-detector`` checkpoint, read (once: the export uses what is read here),
    or None: the file is then read as a generator."""
    if path.suffix != ".pt":
        return None
    if not path.is_file():
        raise CheckpointError("no such model file", path)
    checkpoint = read_checkpoint(path)
    return checkpoint if checkpoint.state.get("format") == DETECTOR_FORMAT else None


def run(args: argparse.Namespace) -> int:
    out = args.out or args.model.with_suffix(".onnx")
    checkpoint = read_detector(args.model)
    detector = checkpoint is not None
    if detector:
        onnx_path, sidecar, diff = export_detector_onnx(checkpoint, out, overwrite=args.overwrite)
    else:
        onnx_path, sidecar, diff = export_generator_onnx(args.model, out,
                                                         overwrite=args.overwrite)
    print(f"wrote {onnx_path} ({onnx_path.stat().st_size / 1e6:.2f} MB, "
          f"{'detector' if detector else 'generator'}, opset {OPSET}, dynamic batch) and {sidecar}")
    print(f"parity with PyTorch (onnxruntime, CPU, 3 seeded images): max |diff| {diff:.1e}")
    return 0
