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
from mrigan.checkpoint import CheckpointError, load_checkpoint
from mrigan.inference import export_generator_onnx
from mrigan.onnx_export import OPSET


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path,
                        help="generator (.safetensors, GAN .pt) or detector checkpoint (.pt)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output .onnx (default: MODEL with the suffix .onnx)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT")


def is_detector(path: Path) -> bool:
    """A ``mrigan train-detector`` checkpoint (else the file is read as a generator)."""
    if path.suffix != ".pt":
        return False
    if not path.is_file():
        raise CheckpointError("no such model file", path)
    return load_checkpoint(path).get("format") == DETECTOR_FORMAT


def run(args: argparse.Namespace) -> int:
    out = args.out or args.model.with_suffix(".onnx")
    detector = is_detector(args.model)
    export = export_detector_onnx if detector else export_generator_onnx
    onnx_path, sidecar, diff = export(args.model, out, overwrite=args.overwrite)
    print(f"wrote {onnx_path} ({onnx_path.stat().st_size / 1e6:.2f} MB, "
          f"{'detector' if detector else 'generator'}, opset {OPSET}, dynamic batch) and {sidecar}")
    print(f"parity with PyTorch (onnxruntime, CPU, 3 seeded images): max |diff| {diff:.1e}")
    return 0
