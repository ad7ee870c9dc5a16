"""MRI-GAN training speed: steps/s and images/s per image size, batch and variant.

Every row runs one full training step (generator + discriminator, Adam, the MRI-GAN losses)
with the paper's networks at full width (U-Net depth follows the image size). Variants, timed
one after the other in the same process on the same inputs, so the ratios are side by side:

* ``textbook``  a textbook pix2pix step: D on the fake and on the real pair in two forwards,
                then G, with ``.item()`` on both losses (the baseline)
* ``fp32``      ``GanTrainer.train_step`` (what ``mrigan train-gan`` runs), fp32
* ``cl``        + channels_last memory format
* ``bf16``      + bf16 autocast (losses stay fp32)
* ``cl+bf16``   both

``out err`` is the largest |MRI| difference of the variant's generator output against fp32 on
the same weights (accuracy of the reduced precision), in [0, 1] MRI units.

    .venv/bin/python bench/train_gan.py              # short: 64 px, batch 1 and 16
    .venv/bin/python bench/train_gan.py --full       # 64, 128, 256 px, batch 1 and 16
    .venv/bin/python bench/train_gan.py --sizes 128 --batches 16 --steps 5
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.nn.functional as F

from mrigan import perceptual
from mrigan.config import load_config
from mrigan.train import GanConfig, GanTrainer

VARIANTS = {  # name -> (precision, channels_last)
    "textbook": ("fp32", False),
    "fp32": ("fp32", False),
    "cl": ("fp32", True),
    "bf16": ("bf16", False),
    "cl+bf16": ("bf16", True),
}


def make_trainer(size: int, precision: str, channels_last: bool, device: str) -> GanTrainer:
    cfg = load_config(GanConfig, None, {
        "model": {"image_size": size},
        "train": {"device": device, "precision": precision, "channels_last": channels_last}})
    torch.manual_seed(0)
    return GanTrainer(cfg)


def textbook_step(tr: GanTrainer, face: torch.Tensor, mri: torch.Tensor) -> None:
    """pix2pix's optimize_parameters, with the MRI-GAN losses, written the plain way."""
    G, D, cfg = tr.generator, tr.discriminator, tr.cfg.loss
    fake = G(face)
    tr.opt_d.zero_grad()
    pred_fake = D(fake.detach(), face)
    pred_real = D(mri, face)
    loss_d = 0.5 * (F.mse_loss(pred_fake, torch.zeros_like(pred_fake))
                    + F.mse_loss(pred_real, torch.ones_like(pred_real)))
    loss_d.backward()
    tr.opt_d.step()
    for p in D.parameters():
        p.requires_grad = False
    tr.opt_g.zero_grad()
    pred_fake = D(fake, face)
    loss_g = F.mse_loss(pred_fake, torch.ones_like(pred_fake)) + cfg.lambda_recon * (
        cfg.tau * F.mse_loss(fake, mri)
        + (1 - cfg.tau) * perceptual.ssim_loss(fake, mri, data_range=1.0))
    loss_g.backward()
    tr.opt_g.step()
    for p in D.parameters():
        p.requires_grad = True
    loss_d.item(), loss_g.item()


def our_step(tr: GanTrainer, face: torch.Tensor, mri: torch.Tensor) -> None:
    terms = tr.train_step(face, mri)
    # the loop's one sync per step: the non-finite check
    bool(torch.isfinite(torch.stack(list(terms.values()))).all())


def time_variant(name: str, size: int, batch: int, steps: int, warmup: int, device: str,
                 reference_out: torch.Tensor | None, probe: torch.Tensor) -> dict:
    precision, cl = VARIANTS[name]
    tr = make_trainer(size, precision, cl, device)
    gen = torch.Generator().manual_seed(1)
    face = tr.to_device(torch.rand(batch, 3, size, size, generator=gen))
    mri = tr.to_device(torch.rand(batch, 3, size, size, generator=gen) * 0.3)
    with torch.no_grad():  # accuracy of this variant's forward, before any step
        tr.generator.eval()
        with tr.autocast():
            out = tr.generator(tr.to_device(probe)).float().cpu()
    step = textbook_step if name == "textbook" else our_step
    for _ in range(warmup):
        step(tr, face, mri)
    if tr.device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        step(tr, face, mri)
    if tr.device.type == "cuda":
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t) / steps
    err = float((out - reference_out).abs().max()) if reference_out is not None else 0.0
    return {"variant": name, "size": size, "batch": batch, "steps_s": 1 / dt,
            "img_s": batch / dt, "err": err, "out": out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="64, 128 and 256 px (slow on a CPU)")
    ap.add_argument("--sizes", type=int, nargs="+", default=None)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = args.sizes or ([64, 128, 256] if args.full else [64])
    devices = ["cpu", "cuda"] if args.device == "auto" and torch.cuda.is_available() else (
        ["cpu"] if args.device == "auto" else [args.device])
    print(f"MRI-GAN training step (paper U-Net + PatchGAN, full width), {os.cpu_count()} CPU "
          f"cores, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{args.steps} timed steps after {args.warmup} warm-up")
    header = (f"{'device':6} {'px':>4} {'batch':>5} {'variant':9} {'steps/s':>8} {'img/s':>8} "
              f"{'vs textbook':>11} {'vs fp32':>8} {'out err':>8}")
    print(header)
    print("-" * len(header))
    for device in devices:
        for size in sizes:
            probe = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(2))
            for batch in args.batches:
                rows: dict[str, dict] = {}
                reference = None
                for name in args.variants:
                    row = time_variant(name, size, batch, args.steps, args.warmup, device,
                                       reference, probe)
                    if name == "fp32" or (reference is None and VARIANTS[name][0] == "fp32"):
                        reference = row["out"]
                    rows[name] = row
                base = rows.get("textbook")
                fp32 = rows.get("fp32")
                for name, r in rows.items():
                    vs_t = f"{r['img_s'] / base['img_s']:.2f}x" if base else "-"
                    vs_f = f"{r['img_s'] / fp32['img_s']:.2f}x" if fp32 else "-"
                    print(f"{device:6} {size:>4} {batch:>5} {name:9} {r['steps_s']:8.3f} "
                          f"{r['img_s']:8.2f} {vs_t:>11} {vs_f:>8} {r['err']:8.4f}", flush=True)


if __name__ == "__main__":
    main()
