"""Realism experiments on graded self-blended clips of seven real people of the shared media.

Two commands (the graded clips themselves are ``detectors.realism.graded``)::

    python bench/realism_graded.py clips --out runs/graded_clips
    python bench/realism_graded.py compare --shared-data ../shared/data --seeds 0 1
    python bench/realism_graded.py compare --seeds 0 1 --generator G.safetensors

``clips`` writes a rated set on disk (face crops, true MRIs, ``labels.csv``) for ``mrigan
train-realism --config configs/realism_cpu.yaml``.

``compare``: does the MRI help realism assessment? Plain vs MRI vs fused inputs, same data, same
budget. Five people for training, two never seen people for testing. Each input kind trains the
same tiny CNN for the same epochs; the frozen-feature baseline and a 0.75 plain + 0.25 MRI
ensemble are scored too. Prints one line per (predictor, maps, seed), then the mean over seeds;
writes ``<out>/compare_inputs.json``.

Which MRIs: the ``true`` rows use the TRUE maps of ``--mri-metric`` (default ``ssim``:
``1 - SSIM(real, fake)``), which a deployed detector never has (it must predict them from the
fake alone); they are the ceiling of the idea, not its measured value. With ``--generator
weights.safetensors`` every MRI-reading predictor is ALSO trained and scored on that generator's
maps (``generator`` rows: the maps ``mrigan.inference.MRIGenerator`` predicts from each face,
for the training and the test clips alike), side by side with the true-map rows in the same run
and seeds; the plain predictors read no MRI and are run once. The generator's maps are also
compared with the true ones on the test clips (mean SSIM beside the all-black map's; every clip
is blended, crude (quality <= 0.5) and subtle clips apart). The generator must not have seen
the test people: ``--write-mri-df DIR`` writes self-blends of the training people only, then
``mrigan train-gan --config configs/mri_gan_cpu.yaml --set data.root=DIR``.

(Moved here from ``detectors/realism/graded.py`` and ``detectors/realism/compare_inputs.py``:
experiments with hard-coded people and data paths do not belong in the library.)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from datasets_builders.synthetic import demo_faces
from detectors.realism import metrics
from detectors.realism.baseline import FrozenFeatureBaseline
from detectors.realism.clips import Clip
from detectors.realism.config import (
    RealismBaselineConfig,
    RealismConfig,
    RealismDataConfig,
    RealismTrainConfig,
)
from detectors.realism.data import attach_generated_mris
from detectors.realism.ensemble import weighted_average
from detectors.realism.graded import (
    faces_from_media,
    graded_clips,
    write_clips,
    write_people_mri_df,
)
from detectors.realism.model import RealismModelConfig
from detectors.realism.predict import predict_clips
from detectors.realism.sampler import SequenceSampler
from detectors.realism.train import train_regressor
from mrigan.fileio import atomic_write_json
from mrigan.inference import MRIGenerator
from mrigan.perceptual import DEFAULT_METRIC, DISSIMILARITIES, mean_ssim

TRAIN_PEOPLE = ("ffpp519", "ffpp634", "astronaut", "ffexample", "dfdc")
TEST_PEOPLE = ("ffpp004", "hopper")
VARIANTS = {"plain": ("plain", "late"), "mri": ("mri", "late"), "fused_late": ("fused", "late"),
            "fused_early": ("fused", "early")}
NO_MRI = "-"  # the maps column of predictors that read no MRI


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shared-data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("runs/realism_compare"))
    parser.add_argument("--mri-metric", default=DEFAULT_METRIC,
                        choices=DISSIMILARITIES.names(), help="the true maps' perceptual metric")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--generator", default="",
                        help="MRIGenerator weights: add rows with its predicted MRIs")
    parser.add_argument("--levels", type=int, default=9, help="quality levels from 0 to 1")
    parser.add_argument("--frames", type=int, default=6, help="frames per clip")
    parser.add_argument("--max-frames", type=int, default=15,
                        help="face frames read per person's video")
    parser.add_argument("--test-draws", type=int, default=10,
                        help="frame sequences averaged per test clip")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--write-mri-df", type=Path, default=None, metavar="DIR",
                        help="only write an MRI-DF of the TRAINING people (to train a generator "
                             "with `mrigan train-gan`), then stop")


def shared_media(shared_data: str | os.PathLike) -> dict[str, Path]:
    """Seven real people in the project's test media (``../shared/data``) and installed packages:
    three FF++ originals, the DFDC sample, the FF++ example frame and Grace Hopper."""
    import matplotlib.cbook

    root = Path(shared_data)
    videos = root / "ffpp" / "original_sequences" / "youtube" / "c23" / "videos"
    return {"ffpp004": videos / "004.mp4", "ffpp519": videos / "519.mp4", "ffpp634": videos / "634.mp4",
            "dfdc": root / "dfdc_unpaired" / "widuwuoiur.mp4",
            "ffexample": root / "ff_examples" / "ex_original.png",
            "hopper": Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))}


def write_clip_set(args: argparse.Namespace) -> int:
    """``clips``: graded clips of the seven people and the astronaut on disk."""
    people = faces_from_media(shared_media(args.shared_data), size=args.size)
    people["astronaut"] = demo_faces(args.size)
    clips = graded_clips(people, tuple(np.linspace(0.0, 1.0, args.levels)),
                         clips_per_level=args.clips_per_level, frames_per_clip=args.frames,
                         mri_metric=args.mri_metric)
    labels = write_clips(clips, args.out)
    print(f"{len(clips)} clips of {len(people)} people -> {labels}")
    return 0


def add_clips_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shared-data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("runs/graded_clips"))
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--levels", type=int, default=9, help="quality levels from 0 to 1")
    parser.add_argument("--clips-per-level", type=int, default=2)
    parser.add_argument("--frames", type=int, default=8, help="frames per clip")
    parser.add_argument("--mri-metric", default=DEFAULT_METRIC, choices=DISSIMILARITIES.names())


def map_sets(train: list[Clip], test: list[Clip], generator: str, size: int,
             metric: str = DEFAULT_METRIC) -> dict[str, tuple[list[Clip], list[Clip]]]:
    """``{"true": clips}``, plus ``{"generator": the same clips with the generator's MRIs}``."""
    sets = {"true": (train, test)}
    if generator:
        gen = MRIGenerator.load(generator, device="cpu")
        if gen.mri_metric != metric:  # its maps would be compared with another metric's
            raise SystemExit(f"{generator}: predicts {gen.mri_metric} maps, the true maps here "
                             f"are {metric} maps; use --mri-metric {gen.mri_metric}")
        sets["generator"] = (attach_generated_mris(train, gen.predict_tensor, size),
                             attach_generated_mris(test, gen.predict_tensor, size))
    return sets


def map_agreement(true_clips: list[Clip], gen_clips: list[Clip]) -> dict:
    """Mean SSIM (data range 1) of the generator's vs the true MRIs per frame, beside the
    all-black map's, over every frame and over the crude (quality <= 0.5) and subtle clips."""
    def stack(mris) -> torch.Tensor:
        arr = np.stack([np.asarray(m) for m in mris])
        return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 255.0

    per_clip = []
    for t, g in zip(true_clips, gen_clips, strict=True):
        true = stack(t.mris)
        per_clip.append((t.record.info["quality"],
                         mean_ssim(stack(g.mris), true, data_range=1.0),
                         mean_ssim(torch.zeros_like(true), true, data_range=1.0)))
    out: dict = {}
    for name, keep in (("all", lambda q: True), ("crude", lambda q: q <= 0.5),
                       ("subtle", lambda q: q > 0.5)):
        sel = [(g, b) for q, g, b in per_clip if keep(q)]
        gen = torch.cat([g for g, _ in sel]) if sel else torch.zeros(0)
        black = torch.cat([b for _, b in sel]) if sel else torch.zeros(0)
        out[name] = {"frames": int(gen.numel()),
                     "mean_ssim": float(gen.mean()) if sel else float("nan"),
                     "mean_ssim_black": float(black.mean()) if sel else float("nan")}
    return out


def compare(args: argparse.Namespace) -> dict:
    """Trains and scores every predictor on every map set; returns the JSON written."""
    people = faces_from_media(shared_media(args.shared_data), size=args.size,
                              max_frames=args.max_frames)
    people["astronaut"] = demo_faces(args.size)
    levels = tuple(np.linspace(0.0, 1.0, args.levels))
    train = graded_clips({p: people[p] for p in TRAIN_PEOPLE}, levels,
                         frames_per_clip=args.frames, seed=0, mri_metric=args.mri_metric)
    test = graded_clips({p: people[p] for p in TEST_PEOPLE}, levels, clips_per_level=2,
                        frames_per_clip=args.frames, seed=1, mri_metric=args.mri_metric)
    sets = map_sets(train, test, args.generator, args.size, args.mri_metric)
    agreement = (map_agreement(test, sets["generator"][1]) if "generator" in sets else None)
    truth = np.array([c.mos for c in test])
    sampler = SequenceSampler(num_frames=5, stride=1, test_draws=args.test_draws)
    rows: list[dict] = []

    def record(name: str, maps: str, seed: int, pred: np.ndarray, seconds: float) -> None:
        rep = metrics.mos_report(truth, pred)
        rows.append({"predictor": name, "maps": maps, "seed": seed, **rep,
                     "seconds": round(seconds, 1)})
        print(f"{name:<14} {maps:<9} seed {seed}  PLCC {rep['plcc']:.3f}  SRCC {rep['srcc']:.3f}"
              f"  RMSE {rep['rmse']:.3f}  ({seconds:.0f} s)", flush=True)

    def fit_predict(name: str, seed: int, tr: list[Clip], te: list[Clip]) -> np.ndarray:
        inputs, fusion = VARIANTS[name]
        cfg = RealismConfig(
            data=RealismDataConfig(image_size=args.size), sampler=sampler,
            model=RealismModelConfig(backbone="tiny-cnn", inputs=inputs, fusion=fusion,
                                     hidden=64, dropout=0.2),
            train=RealismTrainConfig(epochs=args.epochs, batch_size=8, lr=2e-3, loss="rmse",
                                     device="cpu", precision="fp32", tensorboard=False,
                                     seed=seed))
        model = train_regressor(cfg, tr, (), None, log=lambda _: None).model
        return predict_clips(model, te, sampler, inputs=inputs, size=args.size)

    for seed in args.seeds:
        t = time.time()
        plain = fit_predict("plain", seed, train, test)
        record("plain", NO_MRI, seed, plain, time.time() - t)
        t = time.time()
        base = FrozenFeatureBaseline(RealismModelConfig(hidden=64),
                                     RealismBaselineConfig("ridge", alpha=10.0), sampler,
                                     args.size, torch.device("cpu"), seed=seed).fit(train)
        record("baseline_plain", NO_MRI, seed, base.predict(test), time.time() - t)
        for maps, (tr, te) in sets.items():
            preds = {}
            for name in ("mri", "fused_late", "fused_early"):
                t = time.time()
                preds[name] = fit_predict(name, seed, tr, te)
                record(name, maps, seed, preds[name], time.time() - t)
            record("ens_.75p_.25m", maps, seed,
                   weighted_average([plain, preds["mri"]], [0.75, 0.25]), 0.0)

    mean = []
    for key in dict.fromkeys((r["predictor"], r["maps"]) for r in rows):
        sel = [r for r in rows if (r["predictor"], r["maps"]) == key]
        mean.append({"predictor": key[0], "maps": key[1], "n": sel[0]["n"],
                     **{k: float(np.mean([r[k] for r in sel]))
                        for k in ("plcc", "srcc", "rmse", "score")}})
    mean.sort(key=lambda m: (list(VARIANTS).index(m["predictor"]) if m["predictor"] in VARIANTS
                             else len(VARIANTS) + (m["predictor"] != "baseline_plain"),
                             m["maps"] == "generator"))
    summary = {"maps": {"true": f"true {args.mri_metric} maps of (real, fake) (ceiling)",
                        **({"generator": args.generator} if args.generator else {})},
               "generator_vs_true_on_test": agreement, "seeds": list(args.seeds),
               "train_people": TRAIN_PEOPLE, "test_people": TEST_PEOPLE,
               "train_clips": len(train), "test_clips": len(test), "epochs": args.epochs,
               "size": args.size, "rows": rows, "mean": mean}
    atomic_write_json(args.out / "compare_inputs.json", summary)
    return summary


def print_summary(s: dict) -> None:
    print(f"\nmean over seeds {s['seeds']} ({s['test_clips']} test clips of unseen people "
          f"{', '.join(s['test_people'])}; maps: true = true 1-SSIM maps (ceiling)"
          + (f", generator = {s['maps']['generator']}" if "generator" in s["maps"] else "") + ")")
    print(f"{'predictor':<14} {'maps':<9} {'n':>3}  {'PLCC':>5}  {'SRCC':>5}  {'RMSE':>5}  score")
    for m in s["mean"]:
        print(f"{m['predictor']:<14} {m['maps']:<9} {m['n']:>3}  {m['plcc']:.3f}  "
              f"{m['srcc']:.3f}  {m['rmse']:.3f}  {m['score']:.3f}")
    a = s["generator_vs_true_on_test"]
    if a:
        print("generator vs true MRIs on the test clips, mean SSIM (all-black map): " + ", ".join(
            f"{k} {v['mean_ssim']:.3f} ({v['mean_ssim_black']:.3f}) on {v['frames']} frames"
            for k, v in a.items()))


def run_compare(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    if args.write_mri_df:
        people = faces_from_media(shared_media(args.shared_data), size=args.size,
                                  max_frames=args.max_frames)
        people["astronaut"] = demo_faces(args.size)
        root = write_people_mri_df({p: people[p] for p in TRAIN_PEOPLE}, args.write_mri_df,
                                   val_people=("dfdc",), mri_metric=args.mri_metric)
        print(f"MRI-DF of {', '.join(TRAIN_PEOPLE)} -> {root}")
        return 0
    print_summary(compare(args))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    add_clips_arguments(commands.add_parser("clips", help="write graded clips (a rated set)"))
    add_compare_arguments(commands.add_parser("compare", help="plain vs MRI realism inputs"))
    args = parser.parse_args(argv)
    return write_clip_set(args) if args.command == "clips" else run_compare(args)


if __name__ == "__main__":
    sys.exit(main())
