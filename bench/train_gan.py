"""MRI-GAN training speed: steps/s and images/s per image size, batch and variant.

Every row runs one full training step (generator + discriminator, Adam, the MRI-GAN losses)
with the paper's networks at full width (U-Net depth follows the image size). Variants, timed
one after the other in the same process on the same inputs, so the ratios are side by side:

* ``textbook``    a textbook pix2pix step: D on the fake and on the real pair in two forwards,
                  then G, with ``.item()`` on both losses, torch's default Adam, no cuDNN
                  benchmark (the baseline)
* ``fp32``        ``GanTrainer.train_step`` (what ``mrigan train-gan`` runs), fp32, foreach Adam
* ``cl``          + channels_last memory format
* ``bf16``        + bf16 autocast (losses stay fp32)
* ``cl+bf16``     both
* ``fused``       fp32 with fused Adam
* ``bf16+fused``  bf16 with fused Adam
* ``compile``     bf16 + fused Adam + ``torch.compile`` of G and D (compile time apart)
* ``cudagraphs``  ``compile`` with ``compile_mode: reduce-overhead``: CUDA graphs on CUDA
                  (the ``graph skips`` note counts compiled graphs that ran without them)
* ``auto``        every ``auto`` setting: what ``mrigan train-gan`` runs by default on the device

Every variant but ``textbook`` has ``cudnn_benchmark: auto`` (on for CUDA). ``out err`` is the
largest |MRI| difference of the variant's generator output against fp32 on the same weights
(accuracy of the reduced precision), in [0, 1] MRI units. On a CPU without native bf16 the bf16
variants (20x slower there) and the compiled ones (minutes of C++ compilation) are left out
unless named with ``--variants``. Compiled variants get at least 3 warm-up steps (compilation,
then CUDA graph warm-up and recording) whatever ``--warmup`` says. With a CUDA row at 256 px and batch 64 the bench prints issue 14's
goal: the fastest variant >= 2.0x textbook with ``out err`` <= 0.02.

    .venv/bin/python bench/train_gan.py              # short: 64 px, batch 1 and 16
    .venv/bin/python bench/train_gan.py --full       # 64, 128, 256 px, batch 1 and 16
    .venv/bin/python bench/train_gan.py --sizes 128 --batches 16 --steps 5
    .venv/bin/python bench/train_gan.py --device cuda --sizes 256 --batches 64 --steps 20
"""

from __future__ import annotations

import argparse
import functools
import os
import time

import torch
import torch.nn.functional as F

from mrigan import perceptual
from mrigan.config import load_config
from mrigan.device import cpu_has_native_bf16, device_description, resolve_device
from mrigan.train import GanConfig, GanTrainer

VARIANTS = {  # name -> train.* settings (the rest: GanConfig defaults)
    "textbook": {"precision": "fp32", "channels_last": False, "adam_impl": "default",
                 "cudnn_benchmark": False},
    "fp32": {"precision": "fp32", "channels_last": False, "adam_impl": "foreach"},
    "cl": {"precision": "fp32", "channels_last": True, "adam_impl": "foreach"},
    "bf16": {"precision": "bf16", "channels_last": False, "adam_impl": "foreach"},
    "cl+bf16": {"precision": "bf16", "channels_last": True, "adam_impl": "foreach"},
    "fused": {"precision": "fp32", "channels_last": False, "adam_impl": "fused"},
    "bf16+fused": {"precision": "bf16", "channels_last": False, "adam_impl": "fused"},
    "compile": {"precision": "bf16", "channels_last": False, "adam_impl": "fused",
                "compile": True},
    "cudagraphs": {"precision": "bf16", "channels_last": False, "adam_impl": "fused",
                   "compile": True, "compile_mode": "reduce-overhead"},
    "auto": {},
}
SLOW_ON_EMULATED_BF16 = ("bf16", "cl+bf16", "bf16+fused", "compile", "cudagraphs")
COMPILED_WARMUP = 3  # compile, CUDA graph warm-up run, recording: then steady replays


def cudagraph_skips() -> int:
    """Compiled graphs that inductor ran without CUDA graphs so far in this process."""
    from torch._dynamo.utils import counters

    return int(counters["inductor"]["cudagraph_skips"])


def make_trainer(size: int, settings: dict, device: str) -> GanTrainer:
    train = {"device": device, **settings}
    if train.get("adam_impl") == "default":  # torch's own choice: foreach on CUDA, else a loop
        train["adam_impl"] = "foreach" if resolve_device(device).type == "cuda" else "for_loop"
    cfg = load_config(GanConfig, None, {"model": {"image_size": size}, "train": train})
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
    tr = make_trainer(size, VARIANTS[name], device)
    gen = torch.Generator().manual_seed(1)
    face = tr.to_device(torch.rand(batch, 3, size, size, generator=gen))
    mri = tr.to_device(torch.rand(batch, 3, size, size, generator=gen) * 0.3)
    compile_s = 0.0
    skips = cudagraph_skips()
    t = time.perf_counter()
    with torch.no_grad():  # accuracy of this variant's forward (compiled if so), before any step
        tr.generator.eval()
        with tr.autocast():
            out = tr.g(tr.to_device(probe)).float().cpu()
        tr.generator.train()
    if tr.compiled:
        compile_s += time.perf_counter() - t
    step = textbook_step if name == "textbook" else our_step
    for _ in range(max(warmup, COMPILED_WARMUP) if tr.compiled else warmup):
        step(tr, face, mri)
    compile_s += tr.compile_seconds or 0.0
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
            "img_s": batch / dt, "err": err, "out": out, "compile_s": compile_s,
            "graph_skips": cudagraph_skips() - skips if tr.cuda_graphs else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="64, 128 and 256 px (slow on a CPU)")
    ap.add_argument("--sizes", type=int, nargs="+", default=None)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--variants", nargs="+", default=None, choices=list(VARIANTS),
                    help="default: all (on a CPU without native bf16: no bf16 and no compile)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--compile-backend", default="inductor",
                    help="torch.compile backend of the compiled variants; 'eager' (graph capture "
                         "without code generation, the mode ignored) for a quick dry run on a CPU")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.compile_backend != "inductor":
        torch.compile = functools.partial(torch.compile, backend=args.compile_backend)
        print(f"torch.compile backend {args.compile_backend}: compiled rows are NOT figures")
    sizes = args.sizes or ([64, 128, 256] if args.full else [64])
    devices = ["cpu", "cuda"] if args.device == "auto" and torch.cuda.is_available() else (
        ["cpu"] if args.device == "auto" else [args.device])
    print(f"MRI-GAN training step (paper U-Net + PatchGAN, full width), {os.cpu_count()} CPU "
          f"cores, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{args.steps} timed steps after {args.warmup} warm-up")
    chosen = {}
    for device in devices:
        print(f"{device}: {device_description(device)}")
        chosen[device] = args.variants or [
            v for v in VARIANTS if resolve_device(device).type == "cuda" or cpu_has_native_bf16()
            or v not in SLOW_ON_EMULATED_BF16]
        if chosen[device] != list(VARIANTS) and not args.variants:
            print(f"{device}: left out {[v for v in VARIANTS if v not in chosen[device]]} (bf16 "
                  "is emulated on this CPU; name them with --variants to time them)")
    header = (f"{'device':6} {'px':>4} {'batch':>5} {'variant':10} {'steps/s':>8} {'img/s':>8} "
              f"{'vs textbook':>11} {'vs fp32':>8} {'out err':>8} {'compile s':>9}")
    print(header)
    print("-" * len(header))
    for device in devices:
        variants = chosen[device]
        for size in sizes:
            probe = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(2))
            for batch in args.batches:
                rows: dict[str, dict] = {}
                reference = None
                for name in variants:  # each row printed when measured (a timeout keeps them)
                    r = time_variant(name, size, batch, args.steps, args.warmup, device,
                                     reference, probe)
                    if name == "fp32" or (reference is None
                                          and VARIANTS[name].get("precision") == "fp32"):
                        reference = r["out"]
                    rows[name] = r
                    base, fp32 = rows.get("textbook"), rows.get("fp32")
                    vs_t = f"{r['img_s'] / base['img_s']:.2f}x" if base else "-"
                    vs_f = f"{r['img_s'] / fp32['img_s']:.2f}x" if fp32 else "-"
                    comp = f"{r['compile_s']:9.1f}" if r["compile_s"] else f"{'-':>9}"
                    note = (f"  graph skips: {r['graph_skips']}" if r["graph_skips"] is not None
                            else "")
                    print(f"{device:6} {size:>4} {batch:>5} {name:10} {r['steps_s']:8.3f} "
                          f"{r['img_s']:8.2f} {vs_t:>11} {vs_f:>8} {r['err']:8.4f} {comp}{note}",
                          flush=True)
                if "textbook" in rows:
                    print(goal_line(rows, device, size, batch), flush=True)


def goal_line(rows: dict[str, dict], device: str, size: int, batch: int) -> str:
    """Issue 14 goal 1's verdict: the fastest variant with out err <= 0.02 vs textbook."""
    base = rows["textbook"]
    ok = {n: r for n, r in rows.items() if n != "textbook" and r["err"] <= 0.02}
    best = max(ok, key=lambda n: ok[n]["img_s"]) if ok else None
    ratio = ok[best]["img_s"] / base["img_s"] if best else 0.0
    goal = resolve_device(device).type == "cuda" and (size, batch) == (256, 64)
    verdict = (("PASS" if ratio >= 2.0 else "FAIL") if goal
               else "n/a: the goal is CUDA, 256 px, batch 64")
    err = f", out err {ok[best]['err']:.4f}" if best else ""
    comp = f", {ok[best]['compile_s']:.0f} s compile" if best and ok[best]["compile_s"] else ""
    return (f"issue 14 goal 1 ({device_description(device)}, {size} px, batch {batch}): fastest "
            f"variant with out err <= 0.02 is {best} at {ratio:.2f}x textbook "
            f"({ok[best]['img_s'] if best else 0:.1f} vs {base['img_s']:.1f} img/s{err}{comp}) "
            f"-> {verdict} (target >= 2.0x)")

if __name__ == "__main__":
    main()
