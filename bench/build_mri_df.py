"""MRI-DF build speed on the FF++ sample: frames/s and where the time goes.

Three measurements, each side by side in one process on the same (shared, noisy) machine:

1. decoding every Nth frame: PyAV (threaded; what ``datasets_builders.frames`` uses) vs
   OpenCV ``grab``/``retrieve``;
2. MTCNN on full-resolution frames vs frames downscaled to ``--max-side`` (the builder's
   ``faces.max_side``), batched;
3. the whole build (3 originals + 3 fakes of ../shared/data/ffpp) into a temp folder, with
   frames/s and the share of time in decode, augment, detection, crop, SSIM and writing.

    .venv/bin/python bench/build_mri_df.py [--every 10] [--max-side 640] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def decode_pyav(path: Path, every: int) -> int:
    from datasets_builders.frames import iter_frames

    return sum(1 for _ in iter_frames(path, every=every))


def decode_opencv(path: Path, every: int) -> int:
    import cv2

    cap = cv2.VideoCapture(str(path))
    n = i = 0
    while cap.grab():
        if i % every == 0:
            ok, frame = cap.retrieve()
            if ok:
                cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                n += 1
        i += 1
    cap.release()
    return n


def best_of(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "ffpp")
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--max-side", type=int, default=640)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    videos = sorted(args.data.rglob("*.mp4"))
    if not videos:
        raise SystemExit(f"no videos under {args.data}")
    print(f"{os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}, "
          f"every {args.every}th frame, {len(videos)} FF++ videos")

    # 1. decode
    originals = [v for v in videos if "original_sequences" in v.parts]
    for every in sorted({1, args.every, 30}):
        t_av = best_of(lambda e=every: [decode_pyav(v, e) for v in originals], args.repeats)
        t_cv = best_of(lambda e=every: [decode_opencv(v, e) for v in originals], args.repeats)
        n = sum(decode_pyav(v, every) for v in originals)
        print(f"decode every {every:>2}: PyAV {n / t_av:7.1f} frames/s   OpenCV {n / t_cv:7.1f} "
              f"frames/s   PyAV/OpenCV speed {t_cv / t_av:.2f}x")

    # 2. detection resolution
    from datasets_builders.faces import FaceDetector
    from datasets_builders.frames import iter_frames

    frames = [f for v in originals for _, f in iter_frames(v, every=60, max_frames=4)]
    full = FaceDetector(device="cpu", max_side=None, batch_size=4)
    small = FaceDetector(device="cpu", max_side=args.max_side, batch_size=4)
    full.detect(frames[:1])
    t_full = best_of(lambda: full.detect(frames), 1)
    t_small = best_of(lambda: small.detect(frames), 1)
    print(f"MTCNN on {len(frames)} frames: full resolution {len(frames) / t_full:5.2f} frames/s   "
          f"max side {args.max_side} {len(frames) / t_small:5.2f} frames/s   "
          f"speed-up {t_full / t_small:.2f}x")

    # 3. the whole build
    from datasets_builders.mri_df import BuildConfig, FaceConfig, SourceConfig, build_mri_df

    with tempfile.TemporaryDirectory(prefix="mri_df_bench_") as tmp:
        cfg = BuildConfig(out=tmp, sources=(SourceConfig(kind="ffpp", root=str(args.data)),),
                          every=args.every, progress=False,
                          faces=FaceConfig(device="cpu", max_side=args.max_side, size=args.size))
        t = time.perf_counter()
        summary = build_mri_df(cfg, log=lambda _line: None)
        wall = time.perf_counter() - t
    secs = summary.seconds
    total = sum(secs.values())
    print(f"whole build: {summary.frames_decoded} sampled frames (originals + fakes) in {wall:.1f} s = "
          f"{summary.frames_decoded / wall:.2f} frames/s, {summary.pairs_written} pairs "
          f"({summary.pairs_written / wall:.2f} pairs/s)")
    shares = "   ".join(f"{k} {100 * secs.get(k, 0) / wall:4.1f}%" for k in
                        ("decode", "detect", "ssim", "write", "crop", "augment"))
    print(f"time share: {shares}   other {100 * (wall - total) / wall:4.1f}%")


if __name__ == "__main__":
    main()
