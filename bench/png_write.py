"""PNG encoding settings as a lever of the MRI-DF build's writing (issue 14, goal 3).

Builds a small MRI-DF from the FF++ sample (../shared/data/ffpp, every 30th frame, 6 frames a
video, 256 px crops) into a temp folder, reads its face crops and fake MRIs back, and times for
each OpenCV PNG setting, side by side in one run (interleaved rounds, median):

* encode: ``cv2.imencode`` per image (what ``mrigan.fileio.atomic_save_image`` does first);
* encode + atomic write: ``atomic_save_image`` itself (temp file, ``fsync``, rename) into a temp
  folder on the output's disk (``--dir``);
* the mean file size; every setting is checked lossless (decoded pixels equal the input).

OpenCV's default (no parameter: zlib level 1 = ``Z_BEST_SPEED``, ``IMWRITE_PNG_STRATEGY_RLE``;
an explicit ``IMWRITE_PNG_COMPRESSION`` switches the strategy to the zlib default) is the
reference; ratios are default time / setting time (above 1: faster than the default).

    .venv/bin/python bench/png_write.py [--rounds 5] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def sample_images(data: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(face crops, fake MRIs) of a small MRI-DF built from ``data`` (FF++ layout)."""
    import torch

    from datasets_builders.mri_df import (
        BuildConfig,
        BuildSourceConfig,
        FaceDetectionConfig,
        build_mri_df,
    )
    from mrigan.fileio import read_image
    from mrigan.mri_df_format import read_manifest

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="png_write_bench_") as tmp:
        cfg = BuildConfig(out=tmp, sources=(BuildSourceConfig(kind="ffpp", root=str(data)),),
                          every=30, max_frames=6, progress=False,
                          faces=FaceDetectionConfig(device="cpu", size=256))
        build_mri_df(cfg, log=lambda _line: None)
        rows = read_manifest(tmp)
        faces = [read_image(Path(tmp) / r["image"]) for r in rows]
        mris = [read_image(Path(tmp) / r["mri"]) for r in rows if r["label"] == "fake"]
    return faces, mris


def settings() -> list[tuple[str, list[int]]]:
    import cv2

    return [("cv2 default (level 1, RLE)", []),
            ("level 0 (stored)", [cv2.IMWRITE_PNG_COMPRESSION, 0]),
            ("level 1, zlib default strategy", [cv2.IMWRITE_PNG_COMPRESSION, 1]),
            ("level 3", [cv2.IMWRITE_PNG_COMPRESSION, 3]),
            ("level 6", [cv2.IMWRITE_PNG_COMPRESSION, 6]),
            ("strategy HUFFMAN_ONLY", [cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY])]


def encode(img: np.ndarray, params: list[int]) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(img[..., ::-1]), params)
    assert ok
    return buf.tobytes()


def save(path: Path, img: np.ndarray, params: list[int]) -> None:
    """``atomic_save_image`` with ``params`` (the same temp file + fsync + rename)."""
    from mrigan.fileio import atomic_write_bytes

    atomic_write_bytes(path, encode(img, params))


def main() -> None:
    import cv2

    from mrigan.device import cpu_description

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=SHARED / "ffpp")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--dir", type=Path, default=None, help="folder for the written files' temp dir")
    args = ap.parse_args()
    faces, mris = sample_images(args.data)
    print(f"CPU: {cpu_description()}, {os.cpu_count()} cores; OpenCV {cv2.__version__}; load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}; {len(faces)} face crops and "
          f"{len(mris)} fake MRIs of {faces[0].shape} from the FF++ sample; median of "
          f"{args.rounds} interleaved rounds", flush=True)
    results: dict[tuple[str, str], dict[str, list[float]]] = {}
    sizes: dict[tuple[str, str], float] = {}
    with tempfile.TemporaryDirectory(prefix="png_write_", dir=args.dir) as tmp:
        for r in range(args.rounds):
            for name, params in settings():
                for kind, imgs in (("face", faces), ("mri", mris)):
                    res = results.setdefault((name, kind), {"enc": [], "save": []})
                    c = time.process_time()
                    blobs = [encode(i, params) for i in imgs]
                    res["enc"].append((time.process_time() - c) / len(imgs) * 1e3)
                    if r == 0:
                        sizes[name, kind] = float(np.mean([len(b) for b in blobs])) / 1024
                        for img, b in zip(imgs, blobs, strict=True):  # lossless, every setting
                            back = cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR)
                            assert np.array_equal(back[..., ::-1], img), (name, "lossy")
                    t = time.perf_counter()
                    for k, img in enumerate(imgs):
                        save(Path(tmp) / f"{r}" / f"{kind}_{k}.png", img, params)
                    res["save"].append((time.perf_counter() - t) / len(imgs) * 1e3)
    ref = settings()[0][0]
    for kind in ("face", "mri"):
        enc0 = statistics.median(results[ref, kind]["enc"])
        save0 = statistics.median(results[ref, kind]["save"])
        for name, _ in settings():
            enc = statistics.median(results[name, kind]["enc"])
            sv = statistics.median(results[name, kind]["save"])
            print(f"{kind:<4} {name:<32} encode {enc:5.2f} CPU-ms ({enc0 / enc:4.2f}x)  "
                  f"encode+atomic write {sv:5.2f} ms ({save0 / sv:4.2f}x)  "
                  f"{sizes[name, kind]:6.1f} KiB ({sizes[name, kind] / sizes[ref, kind]:4.2f}x size), "
                  "lossless", flush=True)
    print(f"load average at the end {' '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
