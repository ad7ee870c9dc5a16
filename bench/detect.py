"""Detector speed per precision and memory layout: inference (plain, MRI) and a training step.

EfficientNet-B0 + paper head at 224 px, random weights (speed does not depend on them) on the
demo faces (``datasets_builders.synthetic.demo_faces``, tiled to the batch). Paths, as
``mrigan evaluate`` / ``analyze`` / ``train-detector`` run them:

* ``plain``      face crops -> detector (inference; faces/s counts input faces);
* ``mri``        face crops -> MRI-GAN generator (paper U-Net, 256 px; faces resized to it and
                 back) -> detector. The precision applies to both (``analyze`` has one
                 ``precision``), channels_last to the detector (MRIGenerator has no layout);
* ``generator``  the MRI path's generator alone (the precision variants only);
* ``train``      one detector training step, :func:`detectors.train.batch_loss` +
                 :meth:`detectors.train.DetectorTrainer.update` (forward, BCE, backward, Adam),
                 on a batch already on the device: what a step costs on faces or on cached MRIs
                 (``--train-steps``; default 3 on CUDA, 0 = none on a CPU).

Variants: ``fp32``; ``bf16`` (autocast; the head and the scores stay fp32, see
``detectors/model.py``); ``cl`` (channels_last model and inputs); ``bf16+cl``. ``max |diff|``
is the largest |P(fake)| difference from ``fp32`` on the same weights and faces (for
``train``: |loss of the first step - fp32's|). Default variants: all four on CUDA and on CPUs
with native bf16; elsewhere ``fp32`` and ``cl`` (emulated bf16 ran 20x slower; name them with
``--variants`` to time them). Variants are timed one after the other in one process, so the
ratios are side by side; the best of ``--repeats`` timings is kept.

The last line is issue 14 goal 6's verdict: per path the fastest variant with ``max |diff|``
<= 0.02, and whether ``precision: auto`` + ``channels_last: auto`` (what training and
evaluation run by default on the device) is that variant.

    .venv/bin/python bench/detect.py [--batches 3] [--batch 32] [--size 224] [--threads N]
    .venv/bin/python bench/detect.py --device cuda --batch 64 --batches 10 --train-steps 5
"""

from __future__ import annotations

import argparse
import copy
import os
import time

import numpy as np
import torch

from datasets_builders.synthetic import demo_faces
from detectors.config import DetectorModelConfig, DetectorTrainConfig
from detectors.inputs import InputAdapter
from detectors.losses import LOSSES
from detectors.model import build_detector
from detectors.predict import resolve_channels_last
from detectors.train import DetectorTrainer, batch_loss, make_optimizer
from mrigan.device import (
    autocast,
    cpu_has_native_bf16,
    device_description,
    resolve_device,
    resolve_precision,
)
from mrigan.inference import MRIGenerator
from mrigan.models import define_generator

VARIANTS = {"fp32": ("fp32", False), "bf16": ("bf16", False), "cl": ("fp32", True),
            "bf16+cl": ("bf16", True)}  # name -> (precision, channels_last)
MAX_DIFF = 0.02  # issue 14: reduced precision may move a score by at most this


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_rate(fn, n_faces: int, batches: int, repeats: int, device: torch.device) -> float:
    """Faces/s of ``fn()`` (one batch of ``n_faces``), best of ``repeats`` timings."""
    fn()  # warm-up: allocator, cuDNN / oneDNN primitives
    best = 0.0
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        for _ in range(batches):
            fn()
        sync(device)
        best = max(best, batches * n_faces / (time.perf_counter() - t))
    return best


def face_batch(size: int, batch: int) -> torch.Tensor:
    faces = demo_faces(size)
    stack = np.stack([faces[i % len(faces)] for i in range(batch)])
    return torch.from_numpy(stack).permute(0, 3, 1, 2).float().div(255.0).contiguous()


def emit(rows: list[dict], row: dict) -> None:
    """Append ``row`` and print it at once (a timeout keeps what was measured)."""
    rows.append(row)
    fp32 = next((x for x in rows if x["path"] == row["path"] and x["variant"] == "fp32"), None)
    vs = f"{row['rate'] / fp32['rate']:.2f}x" if fp32 else "-"
    diff = f"{row['diff']:11.4f}" if row["diff"] is not None else f"{'-':>11}"
    print(f"{row['path']:<10} {row['variant']:<8} {row['rate']:10.1f} {vs:>8} {diff}",
          flush=True)


def inference_rows(base: torch.nn.Module, generator: MRIGenerator, faces: torch.Tensor,
                   variants: list[str], device: torch.device, args, rows: list[dict]) -> None:
    scores: dict[str, torch.Tensor] = {}
    for path in ("plain", "mri"):
        for name in variants:
            precision, cl = VARIANTS[name]
            layout = torch.channels_last if cl else torch.contiguous_format
            model = copy.deepcopy(base).to(device, memory_format=layout).eval()

            @torch.inference_mode()
            def run(model=model, precision=precision, cl=cl, path=path):
                x = faces
                if path == "mri":
                    generator.precision = precision
                    x = generator.predict_tensor(x)
                if cl:
                    x = x.contiguous(memory_format=torch.channels_last)
                with autocast(device, precision):
                    return torch.sigmoid(model(x).float())

            rate = best_rate(run, faces.shape[0], args.batches, args.repeats, device)
            scores[path, name] = run().float().cpu()
            emit(rows, {"path": path, "variant": name, "rate": rate,
                        "diff": float((scores[path, name] - scores[path, variants[0]])
                                      .abs().max())})
            del model
    for name in dict.fromkeys(VARIANTS[v][0] for v in variants):  # precisions, in order
        generator.precision = name
        rate = best_rate(lambda: generator.predict_tensor(faces), faces.shape[0], args.batches,
                         args.repeats, device)
        emit(rows, {"path": "generator", "variant": name, "rate": rate, "diff": None})


def train_rows(base: torch.nn.Module, faces: torch.Tensor, variants: list[str],
               device: torch.device, steps: int, repeats: int, rows: list[dict]) -> None:
    """One training step per call, as the loop runs it (plain inputs on the device)."""
    labels = (torch.arange(faces.shape[0]) % 2).to(device)
    batch = {"image": faces, "label": labels}
    adapter = InputAdapter(".")
    first: dict[str, float] = {}
    for name in variants:
        precision, cl = VARIANTS[name]
        tc = DetectorTrainConfig(precision=precision, channels_last=cl)
        model = copy.deepcopy(base).to(device)
        if resolve_channels_last(device, tc.channels_last):
            model = model.to(memory_format=torch.channels_last)
        trainer = DetectorTrainer(model, make_optimizer(model, tc))
        model.train()
        loss_fn = LOSSES.get(tc.loss)
        losses: list[float] = []

        def step(trainer=trainer, tc=tc, loss_fn=loss_fn, cl=cl, losses=losses):
            loss = batch_loss(trainer.model, adapter, batch, device, tc, loss_fn, None, cl)
            trainer.update(loss)
            if not losses:
                losses.append(float(loss.detach()))

        torch.manual_seed(0)  # the same dropout mask in every variant's first step
        rate = best_rate(step, faces.shape[0], steps, repeats, device)
        first[name] = losses[0]
        emit(rows, {"path": "train", "variant": name, "rate": rate,
                    "diff": abs(first[name] - first[variants[0]])})
        del trainer, model


def auto_variant(device: torch.device) -> str:
    precision = resolve_precision(device, "auto")
    cl = resolve_channels_last(device, "auto")
    name = {"bf16": "bf16", "fp32": "fp32"}.get(precision, precision)
    return (f"{name}+cl" if name != "fp32" else "cl") if cl else name


def verdict(rows: list[dict], device: torch.device, args) -> str:
    auto = auto_variant(device)
    parts, autos = [], []
    for path in ("plain", "mri", "train"):
        mine = {r["variant"]: r for r in rows if r["path"] == path}
        if not mine:
            continue
        fp32 = mine.get("fp32")
        ok = {n: r for n, r in mine.items() if r["diff"] <= MAX_DIFF}
        if not ok:
            parts.append(f"{path} none")
            continue
        best = max(ok, key=lambda n: ok[n]["rate"])
        ratio = f"{ok[best]['rate'] / fp32['rate']:.2f}x fp32, " if fp32 else ""
        parts.append(f"{path} {best} ({ratio}max |diff| {ok[best]['diff']:.4f})")
        if auto in mine:
            autos.append(f"{path} {'yes' if auto == best else 'no'} "
                         f"({mine[auto]['rate'] / ok[best]['rate']:.2f}x the winner)")
    return (f"issue 14 goal 6 ({device_description(device)}, {args.size} px, batch {args.batch}):"
            f" fastest with max |diff| <= {MAX_DIFF}: {'; '.join(parts)}. auto here = {auto}; "
            f"auto is the winner: {', '.join(autos) or 'auto not timed'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | auto")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batches", type=int, default=2, help="batches per timing")
    ap.add_argument("--repeats", type=int, default=2, help="timings per setting (best kept)")
    ap.add_argument("--generator-size", type=int, default=256)
    ap.add_argument("--generator-width", type=int, default=64, help="generator ngf (paper: 64)")
    ap.add_argument("--backbone", default="efficientnet-b0")
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=None)
    ap.add_argument("--train-steps", type=int, default=None,
                    help="training steps per timing (default: 3 on CUDA, 0 = none on a CPU)")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    variants = args.variants or [v for v in VARIANTS if device.type == "cuda"
                                 or cpu_has_native_bf16() or VARIANTS[v][0] == "fp32"]
    if "fp32" in variants:  # the reference comes first
        variants = ["fp32"] + [v for v in variants if v != "fp32"]
    train_steps = args.train_steps if args.train_steps is not None else (
        3 if device.type == "cuda" else 0)
    torch.manual_seed(0)
    base = build_detector(DetectorModelConfig(backbone=args.backbone, head="paper"))
    generator = MRIGenerator(define_generator("mrigan", image_size=args.generator_size,
                                              ngf=args.generator_width),
                             device=device, batch_size=args.batch)
    faces = face_batch(args.size, args.batch).to(device)
    print(f"{args.backbone} + paper head, {args.size} px, batch {args.batch}, {device.type}: "
          f"{device_description(device)}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {os.cpu_count()} cores; generator "
          f"{args.generator_size} px (U-Net, ngf {args.generator_width}); load average "
          f"{os.getloadavg()[0]:.1f}; variants {variants}; train steps {train_steps}")
    header = f"{'path':<10} {'variant':<8} {'faces/s':>10} {'vs fp32':>8} {'max |diff|':>11}"
    print(header)
    print("-" * len(header))
    rows: list[dict] = []
    inference_rows(base, generator, faces, variants, device, args, rows)
    if train_steps:
        train_rows(base, faces, variants, device, train_steps, args.repeats, rows)
    plain = next(r for r in rows if r["path"] == "plain" and r["variant"] == variants[0])
    mri = next(r for r in rows if r["path"] == "mri" and r["variant"] == variants[0])
    print(f"MRI path costs {plain['rate'] / mri['rate']:.1f}x the plain path in {variants[0]}")
    print(verdict(rows, device, args), flush=True)


if __name__ == "__main__":
    main()
