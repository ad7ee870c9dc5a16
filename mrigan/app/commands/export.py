"""``mrigan export-generator CHECKPOINT``: a training checkpoint's generator as .safetensors.

    mrigan export-generator runs/mri_gan/checkpoints/best.pt --out runs/mri_gan/generator.safetensors

Writes the weights and a JSON sidecar (architecture, image size, provenance) beside them; load
them with ``mrigan.MRIGenerator.load(path)``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mrigan.checkpoint import CheckpointError
from mrigan.inference import export_generator


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="a train-gan checkpoint (best.pt or last.pt)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output .safetensors (default: <run>/generator.safetensors)")
    parser.add_argument("--force", action="store_true",
                        help="overwrite an existing output (refused without it)")


def default_output(checkpoint: Path) -> Path:
    """``runs/x/checkpoints/best.pt`` -> ``runs/x/generator.safetensors``."""
    run_dir = checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent
    return run_dir / "generator.safetensors"


def run(args: argparse.Namespace) -> int:

    out = args.out or default_output(args.checkpoint)
    for existing in (Path(out), Path(out).with_suffix(".json")):
        if existing.exists() and not args.force:
            raise CheckpointError("exists already: an export is never overwritten silently; "
                                  "choose another --out or add --force", existing)
    weights, sidecar = export_generator(args.checkpoint, out)
    print(f"wrote {weights} and {sidecar}")
    return 0
