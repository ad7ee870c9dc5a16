"""The tau question on real faces: MRI-GAN's reconstruction mix ``tau`` swept on real pairs.

MRI-GAN's reconstruction loss is ``lambda * (tau * L2 + (1 - tau) * sqrt(1 - SSIM))`` (paper:
``tau = 0.3``). This study trains one GAN per tau with everything else equal (same split, same
MRI-DF, same seed, steps, size, batch) and scores each on identities no GAN saw, side by side
in one run. It reuses the benchmark's stages (``mrigan.app.benchmark``): the identity-grouped
split of the pairs CSV, the MRI-DF of the training identities (its ``val`` split: the
validation identities that choose each GAN's best step), the held-out MRI-DF of the test
identities, the GAN stage, the export and the GAN-quality stage (held-out mean SSIM of the
predicted vs the true MRI, fakes and reals apart, beside the all-black generator). One split
and one pair of MRI-DF builds serve every tau.

Per tau it reports: the step the validation identities chose (``best step``, out of
``steps``), held-out mean SSIM on fakes and reals of that checkpoint and of the last one, the
all-black baseline, the mean predicted and true MRI intensity on held-out fakes, and
``collapsed``: the chosen checkpoint's mean predicted MRI on held-out fakes is below
``--collapse-ratio`` (default 0.1) of the true MRIs' mean, i.e. it outputs (nearly) black.

Resumable: every stage is a folder of ``--out`` with ``stage.json``; rerunning skips what is
done with the same settings (a finished tau is not trained again), resumes an interrupted GAN
from its ``last.pt``, and refuses a changed setting naming its keys (use another ``--out``).
Writes ``<out>/tau_sweep.json`` and ``<out>/tau_sweep.md``.

    # CPU (64 px GAN, batch 16, 128 px crops of the benchmark's cpu preset; ngf/ndf 16: on a
    # shared 2-core machine ~0.35 CPU-s per step, so 4 x 400 steps take ~30 min):
    OMP_NUM_THREADS=1 .venv/bin/python bench/tau_sweep.py --out runs/tau_cpu --steps 400 \\
        --eval-every 50 --width 16
    # GPU at the paper's 256 px (paper preset: 256 px crops, full-width GAN, batch 128):
    .venv/bin/python bench/tau_sweep.py --preset paper --device cuda --steps 400 \\
        --eval-every 50 --out runs/tau_paper
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path

import torch

from mrigan.app.benchmark import evaluation, models
from mrigan.app.benchmark.config import BenchmarkConfig, GanSettings
from mrigan.app.benchmark.pipeline import data_stages
from mrigan.app.benchmark.stages import Stages
from mrigan.config import PROJECT_ROOT, deep_merge, load_config, parse_overrides, to_dict
from mrigan.device import device_description, resolve_device
from mrigan.errors import MriganError
from mrigan.fileio import atomic_write_json, atomic_write_text
from mrigan.inference import MRIGenerator
from mrigan.mri_df_format import MriDfDataset
from mrigan.outputs import check_output_dir

PRESETS = {"cpu": "configs/benchmark_cpu.yaml", "paper": "configs/benchmark_paper.yaml"}
TAUS = (0.3, 0.5, 0.7, 1.0)
DEFAULT_PAIRS = PROJECT_ROOT.parent / "shared" / "data" / "pairs" / "pairs.csv"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", default=str(DEFAULT_PAIRS),
                   help="CSV of paired real/fake videos (default: ../shared/data/pairs/pairs.csv)")
    p.add_argument("--out", required=True, help="output folder (resumable)")
    p.add_argument("--taus", type=float, nargs="+", default=list(TAUS))
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu",
                   help="benchmark preset for split, crops and the GAN config (default: cpu)")
    p.add_argument("--size", type=int, help="GAN image size (cpu preset: 64, paper: 256)")
    p.add_argument("--steps", type=int, default=600, help="GAN steps per tau (default: 600)")
    p.add_argument("--eval-every", type=int, default=100,
                   help="validation (best-step choice) every N steps (default: 100)")
    p.add_argument("--batch", type=int, help="GAN batch size (cpu preset: 16, paper: 128)")
    p.add_argument("--width", type=int, help="ngf = ndf (cpu preset: 32, paper: 64)")
    p.add_argument("--seed", type=int, default=0, help="GAN training seed, same for every tau")
    p.add_argument("--device", default=None, help="cpu | cuda | auto (default: the preset's)")
    p.add_argument("--collapse-ratio", type=float, default=0.1,
                   help="collapsed: mean predicted MRI on held-out fakes < this x the true mean")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="any BenchmarkConfig key, e.g. data.max_frames=10 (repeatable)")
    return p.parse_args(argv)


def sweep_config(args: argparse.Namespace) -> BenchmarkConfig:
    gan_set: dict = {"train": {"max_steps": args.steps, "eval_every": args.eval_every,
                               "checkpoint_every": args.eval_every, "seed": args.seed}}
    if args.size:
        gan_set["model"] = {"image_size": args.size}
    if args.width:
        gan_set.setdefault("model", {}).update(ngf=args.width, ndf=args.width)
    if args.batch:
        gan_set["train"]["batch_size"] = args.batch
    overrides = deep_merge({"pairs": str(Path(args.pairs).resolve()), "gan": {"set": gan_set}},
                           parse_overrides(args.overrides))
    if args.device:
        overrides["device"] = args.device
    return load_config(BenchmarkConfig, str(PROJECT_ROOT / PRESETS[args.preset]), overrides)


def with_tau(cfg: BenchmarkConfig, tau: float) -> BenchmarkConfig:
    gan = GanSettings(config=cfg.gan.config, set=deep_merge(cfg.gan.set, {"loss": {"tau": tau}}))
    return dataclasses.replace(cfg, gan=gan)


@torch.no_grad()
def mri_intensity(generator: str, heldout_root: str, device: str, batch: int) -> dict:
    """Mean predicted and true MRI value on the held-out fakes (an all-black generator: 0)."""
    gen = MRIGenerator.load(generator, device=device, batch_size=batch)
    ds = MriDfDataset(heldout_root, None, gen.image_size)
    fakes = [i for i, lab in enumerate(ds.labels) if lab == 1]
    pred = true = 0.0
    for start in range(0, len(fakes), batch):
        items = [ds[i] for i in fakes[start:start + batch]]
        faces = torch.stack([it["image"] for it in items])
        pred += float(gen.predict_tensor(faces).float().cpu().mean((1, 2, 3)).sum())
        true += float(torch.stack([it["mri"] for it in items]).mean((1, 2, 3)).sum())
    n = len(fakes)
    return {"n_fake": n, "pred_mean_fake": pred / n if n else math.nan,
            "true_mean_fake": true / n if n else math.nan}


def quality(cfg: BenchmarkConfig, gan: dict, heldout_root: str, folder: Path,
            collapse_ratio: float) -> dict:
    """Held-out quality of the chosen (best-by-validation) and the last checkpoint."""
    out: dict = {"best_step": gan["best_step"], "steps": gan["step"], "used": gan["used"],
                 "best_val_mean_ssim": gan["best_val_mean_ssim"]}
    last = str(Path(gan["checkpoint"]).parent / "last.pt")
    for which, ckpt in (("chosen", gan["checkpoint"]), ("last", last)):
        sub = folder / which
        exported = models.export_stage(ckpt, sub)
        q = evaluation.gan_quality_stage(cfg, exported["generator"], heldout_root, sub)
        q.update(mri_intensity(exported["generator"], heldout_root, cfg.device,
                               cfg.evaluate.batch_size))
        out[which] = q
    c = out["chosen"]
    out["collapsed"] = bool(c["pred_mean_fake"] < collapse_ratio * c["true_mean_fake"])
    return out


def val_curve(checkpoint: str) -> list[list[float]]:
    """The GAN run's validation history: ``[step, mean SSIM, mean MRI on fakes]`` per eval."""
    history = Path(checkpoint).parents[1] / "eval_history.json"
    if not history.is_file():
        return []
    return [[e["step"], round(e["mean_ssim"], 4), round(e["mri_mean_fake"], 4)]
            for e in json.loads(history.read_text(encoding="utf-8"))]


def run_sweep(args: argparse.Namespace, log=print) -> dict:
    cfg = sweep_config(args)
    if not Path(cfg.pairs).is_file():
        raise MriganError("pairs CSV not found", cfg.pairs)
    out = check_output_dir(args.out, [cfg.pairs])
    out.mkdir(parents=True, exist_ok=True)
    st = Stages(out, log=log)
    split, mri_df, heldout = data_stages(cfg, st, log=log)
    rows = []
    for tau in args.taus:
        tcfg = with_tau(cfg, tau)
        gan = st.run(f"tau_{tau}/gan", {"mri_df": mri_df["fingerprint"],
                                          "gan": models.gan_settings(tcfg)},
                     lambda f, c=tcfg: models.gan_stage(c, mri_df["root"], f))
        q = st.run(f"tau_{tau}/quality", {"gan": gan["fingerprint"],
                                            "heldout": heldout["fingerprint"],
                                            "collapse_ratio": args.collapse_ratio},
                   lambda f, c=tcfg, g=gan: quality(c, g, heldout["root"], f,
                                                    args.collapse_ratio))
        rows.append({"tau": tau, **{k: v for k, v in q.items() if k != "fingerprint"},
                     "val_curve": val_curve(gan["checkpoint"])})
    gan_cfg = to_dict(models.gan_config(cfg, "", Path(".")))
    summary = {
        "what": "one MRI-GAN per tau, everything else equal; held-out mean SSIM of predicted vs "
                "true MRI on identities no GAN saw (test split), checkpoint chosen on the "
                "validation identities",
        "device": device_description(resolve_device(gan_cfg["train"]["device"])),
        "pairs": cfg.pairs, "splits": {k: {"identities": v["identities"], "videos": len(v["videos"])}
                                       for k, v in split["splits"].items()},
        "mri_df": mri_df["splits"], "heldout": heldout["splits"],
        "gan": {"image_size": gan_cfg["model"]["image_size"], "ngf": gan_cfg["model"]["ngf"],
                "ndf": gan_cfg["model"]["ndf"], "batch_size": gan_cfg["train"]["batch_size"],
                "steps": args.steps, "eval_every": args.eval_every, "seed": args.seed,
                "lambda_recon": gan_cfg["loss"]["lambda_recon"], "crop": cfg.data.size},
        "collapse_ratio": args.collapse_ratio, "rows": rows, "timings": st.timings}
    atomic_write_json(out / "tau_sweep.json", summary)
    atomic_write_text(out / "tau_sweep.md", markdown(summary))
    return summary


def markdown(s: dict) -> str:
    g = s["gan"]
    test = s["splits"]["test"]
    lines = [
        f"# tau sweep: {g['image_size']} px GAN (ngf/ndf {g['ngf']}/{g['ndf']}, batch "
        f"{g['batch_size']}, lambda {g['lambda_recon']:g}, seed {g['seed']}), {g['steps']} "
        f"steps per tau, on {s['device']}", "",
        f"Held-out: {test['videos']} videos of identities {', '.join(test['identities'])} "
        f"(no GAN saw them); best step chosen on the validation identities "
        f"({', '.join(s['splits']['val']['identities'])}) every {g['eval_every']} steps.",
        "SSIM: mean SSIM (data range 1) of predicted vs true MRI. `black`: the all-black "
        "generator. `pred/true`: mean MRI value on held-out fakes, predicted / true. "
        f"`collapsed`: pred < {s['collapse_ratio']:g} x true.", "",
        "| tau | best step | SSIM fakes | black fakes | SSIM reals | black reals "
        "| pred/true (fakes) | collapsed | last step: SSIM fakes / reals |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | :---: | ---: |"]
    for r in s["rows"]:
        c, last = r["chosen"], r["last"]
        lines.append(
            f"| {r['tau']} | {r['best_step']} / {r['steps']} | {c['fake']['mean_ssim']:.3f} "
            f"| {c['fake']['mean_ssim_black']:.3f} | {c['real']['mean_ssim']:.3f} "
            f"| {c['real']['mean_ssim_black']:.3f} | {c['pred_mean_fake']:.4f} / "
            f"{c['true_mean_fake']:.4f} | {'yes' if r['collapsed'] else 'no'} "
            f"| {last['fake']['mean_ssim']:.3f} / {last['real']['mean_ssim']:.3f} |")
    n = s["rows"][0]["chosen"] if s["rows"] else None
    if n:
        lines += ["", f"n: {n['fake']['n']} fake and {n['real']['n']} real held-out faces."]
    steps = sorted({e[0] for r in s["rows"] for e in r["val_curve"]})
    if steps:
        lines += ["", "Validation identities during training: mean SSIM (mean predicted MRI on "
                  "their fakes) at each evaluation step.", "",
                  "| tau | " + " | ".join(str(st) for st in steps) + " |",
                  "| ---: |" + " ---: |" * len(steps)]
        for r in s["rows"]:
            at = {e[0]: e for e in r["val_curve"]}
            lines.append(f"| {r['tau']} | " + " | ".join(
                f"{at[st][1]:.3f} ({at[st][2]:.3f})" if st in at else "" for st in steps) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None, log=print) -> int:
    args = parse_args(argv)
    try:
        summary = run_sweep(args, log=log)
    except MriganError as exc:
        print(f"tau_sweep: error: {exc}", file=sys.stderr)
        return 2
    print(markdown(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
