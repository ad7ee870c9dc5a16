"""Face detectors side by side (issue 24 goal 3): MTCNN (the paper's) vs BlazeFace
(``faces.detector_name: blazeface``) on the same frames, in one run.

Per video of ``../shared/data`` (every ``--every``-th frame, at most ``--max-frames``): frames
with a face for each detector (recall against MTCNN's), the crop-square IoU of BlazeFace's best
box with MTCNN's first, and CPU milliseconds per frame (alternated, best of ``--repeats``).
Then the dark clips of the face-recall tests (FF++ 634, every 30th frame, darkened: ``bright2``
two frames as they are and six at 10%; ``dark``: three at 10%, five at 2%), each detector's
first pass and first + permissive second pass (``faces.second_pass_below`` 0.5). Last, MTCNN
on one and on two torch threads (``faces.threads``), alternated, on 8 frames of FF++ 634
(1280x720): wall and CPU ms per frame.

    .venv/bin/python bench/face_detectors.py [--every 30] [--max-frames 10] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MRIGAN_SHARED_DATA", ROOT.parent / "shared" / "data"))
VIDEOS = ("ffpp/original_sequences/youtube/c23/videos/519.mp4",
          "ffpp/manipulated_sequences/Deepfakes/c23/videos/519_515.mp4",
          "ffpp/original_sequences/youtube/c23/videos/634.mp4",
          "ffpp/manipulated_sequences/FaceSwap/c23/videos/634_660.mp4",
          "ffpp/original_sequences/youtube/c23/videos/004.mp4",
          "pairs/ffpp_extra/lrnet_real.mp4",
          "pairs/ffpp_more/original_sequences/youtube/c40/videos/866.mp4",
          "labelled_unpaired/more/dfd_actors_01__kitchen_pan.mp4",
          "dfdc_unpaired/widuwuoiur.mp4",
          "labelled_unpaired/dfdc_brtujopkby.mp4")
DARK = {"bright2": (1.0, 1.0, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1),
        "dark": (0.1, 0.1, 0.1, 0.02, 0.02, 0.02, 0.02, 0.02)}


def main() -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from _media import darkened_clip

    from datasets_builders.faces import (
        Detectors,
        FaceBox,
        FaceDetectionConfig,
        iou,
        iter_face_tracks,
        square_box,
    )
    from datasets_builders.frames import iter_frames
    from mrigan.device import cpu_description

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--every", type=int, default=30)
    ap.add_argument("--max-frames", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    names = ("mtcnn", "blazeface")
    cfgs = {n: FaceDetectionConfig(device="cpu", detector_name=n, second_pass_below=0.5)
            for n in names}
    dets = {n: (c.detector(), c.detector(second_pass=True)) for n, c in cfgs.items()}
    print(f"CPU: {cpu_description()}, torch threads {torch.get_num_threads()}, load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}; faces.max_side "
          f"{cfgs['mtcnn'].max_side} (MTCNN; BlazeFace sees 192x192)")
    print(f"{'video':<58} {'frames':>6} {'MTCNN':>6} {'Blaze':>6} {'crop IoU':>9} "
          f"{'MTCNN ms':>9} {'Blaze ms':>9}")
    totals = dict.fromkeys(names, 0)
    cpu = dict.fromkeys(names, 0.0)
    frames_n = 0
    ious = []
    for video in VIDEOS:
        path = SHARED / video
        if not path.is_file():
            continue
        frames = [f for _, f in iter_frames(path, every=args.every, max_frames=args.max_frames)]
        boxes, best = {}, dict.fromkeys(names, float("inf"))
        for _ in range(args.repeats):  # alternated
            for n in names:
                c = time.process_time()
                boxes[n] = dets[n][0].detect(frames)
                best[n] = min(best[n], time.process_time() - c)
        found = {n: sum(bool(b) for b in boxes[n]) for n in names}
        mine = [iou(FaceBox(*square_box(m[0])), FaceBox(*square_box(max(b, key=lambda x: iou(
            x, m[0]))))) for m, b in zip(boxes["mtcnn"], boxes["blazeface"], strict=True)
            if m and b]
        ious += mine
        frames_n += len(frames)
        for n in names:
            totals[n] += found[n]
            cpu[n] += best[n]
        print(f"{video:<58} {len(frames):6d} {found['mtcnn']:6d} {found['blazeface']:6d} "
              f"{np.mean(mine) if mine else float('nan'):9.2f} "
              f"{1000 * best['mtcnn'] / len(frames):9.0f} {1000 * best['blazeface'] / len(frames):9.0f}")
    print(f"{'all':<58} {frames_n:6d} {totals['mtcnn']:6d} {totals['blazeface']:6d} "
          f"{np.mean(ious):9.2f} {1000 * cpu['mtcnn'] / frames_n:9.0f} "
          f"{1000 * cpu['blazeface'] / frames_n:9.0f}   (crop IoU min {min(ious):.2f}; "
          f"BlazeFace {cpu['mtcnn'] / cpu['blazeface']:.1f}x faster per CPU-second)")
    with tempfile.TemporaryDirectory() as tmp:
        for clip_name, gains in DARK.items():
            clip = darkened_clip(SHARED / "ffpp/original_sequences/youtube/c23/videos/634.mp4",
                                 Path(tmp) / f"{clip_name}.mp4", gains)
            frames = [f for _, f in iter_frames(clip, every=1)]
            line = []
            for n in names:
                first = sum(bool(b) for b in dets[n][0].detect(frames))
                both = sum(bool(tf.faces) for tf in iter_face_tracks(
                    lambda clip=clip: iter_frames(clip, every=1),
                    Detectors(cfgs[n], *dets[n]), cfgs[n]))
                line.append(f"{n} first pass {first}/{len(frames)}, with the second pass "
                            f"{both}/{len(frames)}")
            print(f"dark clip {clip_name} (gains {gains}): " + "; ".join(line))
    frames = [f for _, f in iter_frames(SHARED / "ffpp/original_sequences/youtube/c23/videos/634.mp4",
                                        every=10, max_frames=8)]
    best = {}
    for _ in range(args.repeats + 1):
        for n in (1, 2):
            dets["mtcnn"][0].threads = n
            t, c = time.perf_counter(), time.process_time()
            dets["mtcnn"][0].detect(frames)
            wall, cpu_s = time.perf_counter() - t, time.process_time() - c
            old = best.get(n, (float("inf"), float("inf")))
            best[n] = (min(old[0], wall), min(old[1], cpu_s))
    print(f"MTCNN on 8 frames of FF++ 634 (1280x720), best of {args.repeats + 1}, load "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}: " + "; ".join(
              f"{n} torch thread(s) {1000 * w / 8:.0f} ms a frame ({1000 * c / 8:.0f} CPU-ms)"
              for n, (w, c) in best.items()))


if __name__ == "__main__":
    main()
