"""Does the MRI help realism assessment? Plain vs MRI vs fused inputs, same data, same budget.

    python -m detectors.realism.compare_inputs --shared-data ../shared/data --seeds 0 1

Graded self-blended clips of real people (``graded.py``): five people for training, two never
seen people for testing. Each input kind trains the same tiny CNN for the same epochs; the
frozen-feature baseline and a 0.75 plain + 0.25 MRI ensemble are scored too. Prints one line
per (predictor, seed) and the mean over seeds; writes ``<out>/compare_inputs.json``.

Read the MRI rows with care: without ``--generator`` the MRIs are the TRUE ``1 - SSIM(real,
fake)`` maps, which a deployed detector never has (it must predict them from the fake alone
with the MRI-GAN generator). Those rows are the ceiling of the idea, not its measured value;
pass ``--generator weights.safetensors`` to score generator-predicted MRIs instead. A generator
that never saw the test people: ``--write-mri-df DIR`` writes self-blends of the training people
only, then ``mrigan train-gan --config configs/mri_gan_cpu.yaml --set data.root=DIR``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from datasets_builders.synthetic import demo_faces
from detectors.realism import metrics
from detectors.realism.baseline import FrozenFeatureBaseline
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
    shared_media,
    write_people_mri_df,
)
from detectors.realism.model import RealismModelConfig
from detectors.realism.predict import predict_clips
from detectors.realism.sampler import SequenceSampler
from detectors.realism.train import train_regressor
from mrigan.fileio import atomic_write_json
from mrigan.inference import MRIGenerator

TRAIN_PEOPLE = ("ffpp519", "ffpp634", "astronaut", "ffexample", "dfdc")
TEST_PEOPLE = ("ffpp004", "hopper")
VARIANTS = {"plain": ("plain", "late"), "mri": ("mri", "late"), "fused_late": ("fused", "late"),
            "fused_early": ("fused", "early")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared-data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("runs/realism_compare"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--generator", default="", help="MRIGenerator weights: predicted MRIs")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--write-mri-df", type=Path, default=None, metavar="DIR",
                        help="only write an MRI-DF of the TRAINING people (to train a generator "
                             "with `mrigan train-gan`), then stop")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)


    people = faces_from_media(shared_media(args.shared_data), size=args.size)
    people["astronaut"] = demo_faces(args.size)
    if args.write_mri_df:
        root = write_people_mri_df({p: people[p] for p in TRAIN_PEOPLE}, args.write_mri_df,
                                   val_people=("dfdc",))
        print(f"MRI-DF of {', '.join(TRAIN_PEOPLE)} -> {root}")
        return 0
    levels = tuple(np.linspace(0.0, 1.0, 9))
    train = graded_clips({p: people[p] for p in TRAIN_PEOPLE}, levels, frames_per_clip=6, seed=0)
    test = graded_clips({p: people[p] for p in TEST_PEOPLE}, levels, clips_per_level=2,
                        frames_per_clip=6, seed=1)
    mri_kind = "true 1-SSIM (ceiling)"
    if args.generator:

        gen = MRIGenerator.load(args.generator, device="cpu")
        train = attach_generated_mris(train, gen.predict_tensor, args.size)
        test = attach_generated_mris(test, gen.predict_tensor, args.size)
        mri_kind = f"generator {args.generator}"
    truth = np.array([c.mos for c in test])
    sampler = SequenceSampler(num_frames=5, stride=1, test_draws=10)
    rows: list[dict] = []

    def record(name: str, seed: int, pred: np.ndarray, seconds: float) -> None:
        rep = metrics.mos_report(truth, pred)
        rows.append({"predictor": name, "seed": seed, **rep, "seconds": round(seconds, 1)})
        print(f"{name:<14} seed {seed}  PLCC {rep['plcc']:.3f}  SRCC {rep['srcc']:.3f}  "
              f"RMSE {rep['rmse']:.3f}  ({seconds:.0f} s)", flush=True)

    for seed in args.seeds:
        preds = {}
        for name, (inputs, fusion) in VARIANTS.items():
            cfg = RealismConfig(
                data=RealismDataConfig(image_size=args.size), sampler=sampler,
                model=RealismModelConfig(backbone="tiny-cnn", inputs=inputs, fusion=fusion, hidden=64, dropout=0.2),
                train=RealismTrainConfig(epochs=args.epochs, batch_size=8, lr=2e-3, loss="rmse", device="cpu",
                                  precision="fp32", tensorboard=False, seed=seed))
            t = time.time()
            model = train_regressor(cfg, train, (), None, log=lambda _: None).model
            preds[name] = predict_clips(model, test, sampler, inputs=inputs, size=args.size)
            record(name, seed, preds[name], time.time() - t)
        t = time.time()
        base = FrozenFeatureBaseline(RealismModelConfig(hidden=64), RealismBaselineConfig("ridge", alpha=10.0),
                                     sampler, args.size, torch.device("cpu"), seed=seed).fit(train)
        record("baseline_plain", seed, base.predict(test), time.time() - t)
        record("ens_.75p_.25m", seed, weighted_average([preds["plain"], preds["mri"]], [0.75, 0.25]), 0.0)

    print(f"\nmean over seeds {args.seeds} ({len(test)} test clips of unseen people; MRI = {mri_kind})")
    summary = {}
    for name in dict.fromkeys(r["predictor"] for r in rows):
        sel = [r for r in rows if r["predictor"] == name]
        summary[name] = {k: float(np.mean([r[k] for r in sel])) for k in ("plcc", "srcc", "rmse", "score")}
        s = summary[name]
        print(f"{name:<14} PLCC {s['plcc']:.3f}  SRCC {s['srcc']:.3f}  RMSE {s['rmse']:.3f}  score {s['score']:.3f}")
    atomic_write_json(args.out / "compare_inputs.json",
                      {"mri": mri_kind, "train_people": TRAIN_PEOPLE, "test_people": TEST_PEOPLE,
                       "epochs": args.epochs, "size": args.size, "rows": rows, "mean": summary})
    return 0


if __name__ == "__main__":
    sys.exit(main())
