"""Does the training loop keep up with the step? ``mrigan train-gan`` img/s vs the bench step's.

Writes a synthetic MRI-DF (``datasets_builders.synthetic.write_synthetic_mri_df``) into a
temporary folder, then, with the same config and settings:

* ``step``: ``GanTrainer.train_step`` on one batch already on the device, plus the loop's one
  sync per step (the non-finite check), as ``bench/train_gan.py`` times it;
* ``loop``: ``mrigan.train.train_gan`` (what ``mrigan train-gan`` runs), timed from the end of
  the warm-up steps to the last step with a step callback: data loading, host-to-device copies,
  logging and the loop's bookkeeping included (the run's evaluation and checkpoint intervals
  are longer than the bench, as in a real run between two of them).

Two datasets: ``long`` epochs (issue 14's goal: loop >= 0.90 of the step) and ``short``
epochs of a few batches (many epoch boundaries inside the timed steps: with one DataLoader
iterator for the whole run they must cost nothing).

    .venv/bin/python bench/train_loop.py                              # CPU preset, 64 px, batch 16
    .venv/bin/python bench/train_loop.py --device cuda --config configs/mri_gan.yaml \\
        --size 256 --batch 64 --workers 8 --steps 60
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

import torch

from datasets_builders.synthetic import write_synthetic_mri_df
from mrigan.config import load_config
from mrigan.device import device_description
from mrigan.mri_df_format import MriDfDataset
from mrigan.train import (
    GanConfig,
    GanTrainer,
    RunBatchSampler,
    epoch_batches,
    replace,
    train_gan,
)


def loop_img_s(cfg: GanConfig, warmup: int) -> tuple[float, int]:
    """images/s of train_gan between the end of step ``warmup`` and its last step (the images
    of the batches it trained, last batches of epochs may be smaller); epochs run."""
    times: list[float] = []

    def clock(trainer, step, terms):
        times.append(time.perf_counter())

    result = train_gan(cfg, callbacks=[clock])
    labels = MriDfDataset(cfg.data.root, cfg.data.train_split, cfg.model.image_size).labels
    batches = list(RunBatchSampler(labels, cfg.train.seed, cfg.train.batch_size,
                                   result.epoch + 1))[warmup:len(times)]
    images = sum(len(b) for b in batches)
    return images / (times[-1] - times[warmup - 1]), result.epoch


def step_img_s(cfg: GanConfig, steps: int, warmup: int) -> float:
    torch.manual_seed(cfg.train.seed)
    tr = GanTrainer(cfg)
    data = MriDfDataset(cfg.data.root, cfg.data.train_split, cfg.model.image_size)
    items = [data[i % len(data)] for i in range(cfg.train.batch_size)]
    face = tr.to_device(torch.stack([it["image"] for it in items]))
    mri = tr.to_device(torch.stack([it["mri"] for it in items]))
    for _ in range(warmup):
        tr.train_step(face, mri)
    if tr.device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        terms = tr.train_step(face, mri)
        bool(torch.isfinite(torch.stack(list(terms.values()))).all())  # the loop's sync
    return steps * cfg.train.batch_size / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/mri_gan_cpu.yaml")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=20, help="timed steps")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--workers", type=int, default=None,
                    help="data.num_workers (default: the config's; the CPU preset loads in the "
                         "main process, the paper config with 4 workers)")
    ap.add_argument("--faces", type=int, default=64, help="identities of the long-epoch MRI-DF")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="mrigan_loop_bench_") as tmp:
        tmp = Path(tmp)
        datasets = {
            "long": write_synthetic_mri_df(tmp / "long", n_faces=args.faces, size=args.size,
                                           fakes_per_face=4),
            "short": write_synthetic_mri_df(tmp / "short", n_faces=4, size=args.size,
                                            fakes_per_face=args.batch // 2),  # ~3 batches
        }
        base = load_config(GanConfig, args.config, [
            f"out_dir={tmp / 'runs'}", f"model.image_size={args.size}",
            f"train.batch_size={args.batch}", f"train.device={args.device}",
            f"train.max_steps={args.warmup + args.steps}", "train.epochs=100000",
            "train.eval_every=0", "train.checkpoint_every=0",
            *([f"data.num_workers={args.workers}"] if args.workers is not None else []),
            *args.overrides])
        device = GanTrainer(base).device
        print(f"MRI-GAN loop vs step: {args.config}, {args.size} px, batch {args.batch}, "
              f"{base.data.num_workers} workers, precision {base.train.precision}, {args.steps} timed "
              f"steps after {args.warmup}; torch {torch.__version__}, {os.cpu_count()} CPU "
              f"cores, {torch.get_num_threads()} threads")
        print(f"{device.type}: {device_description(device)}")
        header = (f"{'dataset':8} {'train rows':>10} {'batches/epoch':>13} {'epochs run':>10} "
                  f"{'step img/s':>10} {'loop img/s':>10} {'loop/step':>9}")
        print(header)
        print("-" * len(header))
        ratios: dict[str, tuple[float, float, float]] = {}
        for name, root in datasets.items():
            cfg = replace(base, name=name, data={"root": str(root)})
            step = step_img_s(cfg, args.steps, args.warmup)  # right before: same machine load
            loop, epochs = loop_img_s(cfg, args.warmup)
            labels = MriDfDataset(root, cfg.data.train_split, args.size).labels
            n_batches = len(epoch_batches(labels, 0, cfg.train.seed, args.batch))
            print(f"{name:8} {len(labels):>10} {n_batches:>13} {epochs:>10} {step:10.2f} "
                  f"{loop:10.2f} {loop / step:8.2f}x", flush=True)
            ratios[name] = (loop / step, loop, step)
        long, short = ratios["long"], ratios["short"]
        print(f"issue 14 goal 2 ({device_description(device)}, {args.config}, {args.size} px, "
              f"batch {args.batch}, {base.data.num_workers} workers): loop/step {long[0]:.2f} on "
              f"long epochs ({long[1]:.1f} vs {long[2]:.1f} img/s) -> "
              f"{'PASS' if long[0] >= 0.90 else 'FAIL'} (target >= 0.90); short epochs "
              f"{short[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
