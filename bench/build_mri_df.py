"""MRI-DF build speed on the FF++ sample, side by side in one run (issue 14, goal 3).

Prints, on the same (shared, noisy) machine and in one process:

(a) decode-only frames/s: every ``--every``-th frame of every video the build reads (the
    originals and their fakes), decoded with ``datasets_builders.frames.iter_frames``;
(b) the whole build (``build_mri_df`` on ../shared/data/ffpp into a temp folder): its frames/s
    (the same sampled frames), the ratio b/a, pairs/s, and the share of time per stage;
(c) the ORIGINAL approach as a baseline, on the FF++ pairs of ../shared/data/pairs/pairs.csv:
    MTCNN on every frame of both the real and the fake video at full resolution (one frame per
    call), a crop per video from its own box, PNG crops written, scikit-image SSIM
    (``structural_similarity(full=True, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False)``) and the MRI PNG written. Limited to the first
    ``--baseline-frames`` frames of each video (it runs at well under 1 pair/s); the ratio of
    the build's fake pairs/s to the baseline's is printed.

plus the CPU model and the thread count.

    .venv/bin/python bench/build_mri_df.py [--every 10] [--detect-every 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def decode_only(videos: list[Path], every: int) -> tuple[int, float, float]:
    """(frames, wall seconds, CPU seconds of this process)."""
    from datasets_builders.frames import iter_frames

    t, c = time.perf_counter(), time.process_time()
    n = sum(1 for v in videos for _ in iter_frames(v, every=every))
    return n, time.perf_counter() - t, time.process_time() - c


def run_build(data: Path, args, *, memo: bool = True, prefetch: bool = True,
              detect_every: int | None = None) -> tuple[object, float, int, float]:
    """The build; ``memo`` / ``prefetch`` off turn those levers off (``--levers``)."""
    from datasets_builders import build_unit
    from datasets_builders.mri_df import (
        BuildConfig,
        BuildSourceConfig,
        FaceDetectionConfig,
        build_mri_df,
    )
    from mrigan.mri_df_format import read_manifest

    saved = build_unit.MEMO_BYTES, build_unit.background
    build_unit.MEMO_BYTES = saved[0] if memo else 0
    build_unit.background = saved[1] if prefetch else (lambda make, _depth: iter(make()))

    faces = FaceDetectionConfig(device="cpu", size=args.size,
                       **({"max_side": args.max_side} if args.max_side else {}))
    with tempfile.TemporaryDirectory(prefix="mri_df_bench_") as tmp:
        cfg = BuildConfig(out=tmp, sources=(BuildSourceConfig(kind="ffpp", root=str(data)),),
                          every=args.every, progress=False, faces=faces,
                          detect_every=detect_every or args.detect_every)
        t, c = time.perf_counter(), time.process_time()
        try:
            summary = build_mri_df(cfg, log=lambda _line: None)
        finally:
            build_unit.MEMO_BYTES, build_unit.background = saved
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        fakes = sum(r["label"] == "fake" for r in read_manifest(tmp))
    return summary, wall, fakes, cpu


def baseline_pairs(csv_path: Path) -> list[tuple[Path, Path]]:
    with open(csv_path, newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["label"] == "fake"]
    return [((csv_path.parent / r["original"]).resolve(), (csv_path.parent / r["path"]).resolve())
            for r in rows]


def run_baseline(pairs: list[tuple[Path, Path]], frames: int, size: int) -> tuple[int, float, float]:
    """The original approach (see the module doc) on the first ``frames`` frames of each pair."""
    from facenet_pytorch import MTCNN
    from skimage.metrics import structural_similarity

    from datasets_builders.face_boxes import FaceBox
    from datasets_builders.faces import PAPER_THRESHOLDS, crop_face
    from datasets_builders.frames import iter_frames
    from mrigan.fileio import atomic_save_image, read_image

    mtcnn = MTCNN(keep_all=True, thresholds=list(PAPER_THRESHOLDS), device="cpu")
    n_pairs = 0
    with tempfile.TemporaryDirectory(prefix="mri_df_baseline_") as tmp:
        t, c = time.perf_counter(), time.process_time()
        for p, (real, fake) in enumerate(pairs):
            crops: dict[str, dict[int, Path]] = {"real": {}, "fake": {}}
            for kind, video in (("real", real), ("fake", fake)):
                for index, frame in iter_frames(video, every=1, max_frames=frames):
                    boxes, probs = mtcnn.detect(frame)  # full resolution, one frame per call
                    if boxes is None:
                        continue
                    b = boxes[int(np.argmax(probs))]
                    crop = crop_face(frame, FaceBox(*map(float, b), 1.0), margin=1.3, size=size)
                    path = Path(tmp) / f"{p}_{kind}" / f"{index:06d}.png"
                    atomic_save_image(path, crop)
                    crops[kind][index] = path
            for index in sorted(set(crops["real"]) & set(crops["fake"])):
                a = read_image(crops["real"][index])
                b = read_image(crops["fake"][index])
                _, ssim = structural_similarity(a, b, full=True, channel_axis=2, data_range=255,
                                                gaussian_weights=True, sigma=1.5,
                                                use_sample_covariance=False)
                mri = np.clip(1.0 - ssim, 0.0, 1.0)
                atomic_save_image(Path(tmp) / f"{p}_mri" / f"{index:06d}.png",
                                  np.rint(mri * 255).astype(np.uint8))
                n_pairs += 1
        wall, cpu = time.perf_counter() - t, time.process_time() - c
    return n_pairs, wall, cpu


def main() -> None:
    from mrigan.device import cpu_description

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=SHARED / "ffpp")
    ap.add_argument("--pairs", type=Path, default=SHARED / "pairs" / "pairs.csv")
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--detect-every", type=int, default=None,
                    help="detect on every k-th sampled frame (default: BuildConfig's)")
    ap.add_argument("--max-side", type=int, default=None, help="faces.max_side (default: config's)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--baseline-frames", type=int, default=8,
                    help="first K frames of each video for the original approach (0: skip it)")
    ap.add_argument("--levers", action="store_true",
                    help="also time the build with each lever off / on, one at a time")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.detect_every is None:
        from datasets_builders.mri_df import BuildConfig

        args.detect_every = BuildConfig().detect_every
    videos = sorted(args.data.rglob("*.mp4"))
    if not videos:
        raise SystemExit(f"no videos under {args.data}")
    print(f"CPU: {cpu_description()}, {os.cpu_count()} cores, torch threads "
          f"{torch.get_num_threads()}; every {args.every}th frame, detect every "
          f"{args.detect_every} sampled frame(s), {len(videos)} FF++ videos")

    n_dec, t_dec, c_dec = decode_only(videos, args.every)
    summary, wall, fakes, cpu = run_build(args.data, args)
    dec_fps = n_dec / t_dec
    build_fps = summary.frames_decoded / wall
    print(f"(a) decode only: {n_dec} sampled frames in {t_dec:.1f} s = {dec_fps:.1f} frames/s "
          f"({n_dec / c_dec:.1f} frames per CPU-second)")
    print(f"(b) build: {summary.frames_decoded} sampled frames in {wall:.1f} s = {build_fps:.1f} "
          f"frames/s = {build_fps / dec_fps:.2f} of decode-only; {summary.pairs_written} pairs "
          f"({summary.pairs_written / wall:.1f} pairs/s), {fakes} fake pairs "
          f"({fakes / wall:.2f} fake pairs/s); per CPU-second {summary.frames_decoded / cpu:.1f} "
          f"frames = {summary.frames_decoded / cpu / (n_dec / c_dec):.2f} of decode-only")
    secs = summary.seconds
    shares = "   ".join(f"{k} {100 * secs.get(k, 0) / wall:4.1f}%" for k in
                        ("detect", "decode", "augment", "crop", "ssim", "write"))
    print(f"    time shares of the build (threads overlap): {shares}")
    if args.levers:
        variants = [("no memo, no prefetch, detect every 1", dict(memo=False, prefetch=False,
                                                                  detect_every=1)),
                    ("memo + prefetch, detect every 3", dict(detect_every=3))]
        for name, kw in variants:
            s, w, _, c = run_build(args.data, args, **kw)
            print(f"    lever: {name:<38} {s.frames_decoded / w:6.1f} frames/s = "
                  f"{s.frames_decoded / w / dec_fps:.2f} of decode-only; per CPU-second "
                  f"{s.frames_decoded / c / (n_dec / c_dec):.2f} of decode-only")
    if args.baseline_frames > 0:
        pairs = baseline_pairs(args.pairs)
        n_base, t_base, c_base = run_baseline(pairs, args.baseline_frames, args.size)
        base_rate = n_base / t_base
        print(f"(c) original approach (full-res MTCNN on every frame of real and fake, crops per "
              f"video, scikit-image SSIM), first {args.baseline_frames} frames of {len(pairs)} "
              f"pairs: {n_base} fake pairs in {t_base:.1f} s = {base_rate:.2f} fake pairs/s; "
              f"build / original = {fakes / wall / base_rate:.1f}x (per CPU-second: "
              f"{(fakes / cpu) / (n_base / c_base):.1f}x)")


if __name__ == "__main__":
    main()
