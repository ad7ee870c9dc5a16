"""``mrigan mri REAL FAKE --out DIR``: MRI maps of aligned real/fake image pairs.

``--out`` is checked by :func:`mrigan.outputs.check_output_dir` before anything is read: never an
existing file, never inside the folder of an input, never a folder that holds an input.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mrigan import perceptual
from mrigan.errors import MriganError
from mrigan.fileio import ImageNotFoundError, atomic_save_image, atomic_write_json, read_image
from mrigan.outputs import BatchRun, check_output_dir


class ImagePairError(MriganError, ValueError):
    """A real/fake pair that cannot be compared (different sizes)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("real", type=Path, help="the original image")
    parser.add_argument("fakes", type=Path, nargs="+", help="images made from it, same size")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--metric", default="ssim", choices=perceptual.DISSIMILARITIES.names())


def mri_pair_to_files(real_path: Path, fake_path: Path, out: Path, metric: str = "ssim") -> dict:
    """Write ``<fake>_mri.png`` into ``out``; return summary figures."""
    import torch

    real, fake = read_image(real_path), read_image(fake_path)
    if real.shape != fake.shape:
        raise ImagePairError(f"size {fake.shape} differs from {real_path} {real.shape}", fake_path)
    to_t = perceptual._to_nchw
    with torch.no_grad():
        mri = perceptual.get(metric)(to_t(real), to_t(fake), data_range=255.0)
    mri_np = mri[0].permute(1, 2, 0).numpy()
    dest = out / f"{fake_path.stem}_{metric}_mri.png"
    atomic_save_image(dest, perceptual.mri_to_uint8(mri_np))
    return {"real": str(real_path), "fake": str(fake_path), "mri": str(dest),
            "mean": float(mri_np.mean()), "p99": float(np.percentile(mri_np, 99))}


def _refuse_colliding_names(fakes: list[Path], metric: str) -> None:
    """Two fakes whose map would get the same file name (``a/fake.png``, ``b/fake.png``): refused
    before any work rather than one map silently overwriting the other."""
    first: dict[str, Path] = {}
    for f in fakes:
        name = f"{f.stem}_{metric}_mri.png"
        if name in first and first[name].resolve() != f.resolve():
            raise ImagePairError(f"its map would overwrite the map of {first[name]} (both named "
                                 f"{name}); run them with separate --out folders", f)
        first.setdefault(name, f)


def run(args: argparse.Namespace) -> int:
    for path in (args.real, *args.fakes):  # every input before anything else
        if not path.is_file():
            raise ImageNotFoundError("no such image file", path)
    check_output_dir(args.out, [args.real, *args.fakes])
    _refuse_colliding_names(args.fakes, args.metric)
    results = []
    with BatchRun(args.out, "mri", map(str, args.fakes)) as batch:  # one writer, marked
        for fake in args.fakes:
            results.append(mri_pair_to_files(args.real, fake, args.out, args.metric))
            batch.done(str(fake))
        atomic_write_json(args.out / "mri_summary.json", results)
    for r in results:
        print(f"{r['fake']}: mean MRI {r['mean']:.4f}, p99 {r['p99']:.4f} -> {r['mri']}")
    return 0
