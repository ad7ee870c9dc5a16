"""GAN sweeps on real pairs: one MRI-GAN per *variant* (a named set of ``GanConfig``
overrides), everything else equal, each judged on identities it never trained on.

The machinery behind ``bench/tau_sweep.py`` (variants: values of ``loss.tau``) and
``bench/gan_recipes.py`` (variants: named training recipes, issue 21). It reuses the
benchmark's stages (:mod:`mrigan.app.benchmark`): the identity-grouped split of a pairs CSV, the
MRI-DF of the training and validation identities (optionally with self-blended fakes of the
training faces, ``data.self_blend_per_real``), the held-out MRI-DF of the test identities, the
GAN stage, the export and the GAN-quality stage. One split and one pair of MRI-DF builds serve
every variant. Per variant two stages, ``<variant>/gan`` and ``<variant>/quality``:

* ``gan``: trains it; ``train.select_by`` picks its checkpoint on the validation identities'
  fixed sample (``data.eval_samples``);
* ``quality``: for the chosen and the last checkpoint, the held-out (test identities) mean SSIM
  on fakes and reals beside the all-black generator and the mean predicted / true MRI on the
  held-out fakes; for the chosen one also the localization figures of
  :mod:`mrigan.localization` (fake SSIM, pixel AUC against the true-MRI mask, face AUC,
  ``select``, each beside the all-black and the mean-map baseline, the mean map being the mean
  true MRI of the training split's fakes) on **every** validation face (``val``, the judge a
  sweep ranks by) and on the test identities (``test``, shown, never used to choose).

``collapsed``: the chosen checkpoint's mean predicted MRI on held-out fakes is below
``collapse_ratio`` x the true MRIs' mean (it draws (nearly) black maps); ``localization.val``
has the same test on the validation fakes (``collapsed``).

Resumable: every stage is a folder of ``--out`` with ``stage.json``
(:mod:`mrigan.app.benchmark.stages`); a finished variant is not trained again, an interrupted
GAN resumes from its ``last.pt``, a changed setting is refused naming its keys.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mrigan.app.benchmark import evaluation, models
from mrigan.app.benchmark.config import BenchmarkConfig
from mrigan.app.benchmark.pipeline import data_stages
from mrigan.app.benchmark.stages import BenchmarkError, Stages
from mrigan.config import (
    PROJECT_ROOT,
    deep_merge,
    load_config,
    parse_overrides,
    replace_keys,
    to_dict,
)
from mrigan.device import device_description, resolve_device
from mrigan.errors import MriganError
from mrigan.fileio import atomic_write_json, atomic_write_text
from mrigan.gan_trainer import training_mean_map
from mrigan.inference import MRIGenerator
from mrigan.localization import localization_figures
from mrigan.mri_df_format import MriDfDataset
from mrigan.outputs import check_output_dir

_log = logging.getLogger(__name__)

PRESETS = {"cpu": "configs/benchmark_cpu.yaml", "paper": "configs/benchmark_paper.yaml"}
DEFAULT_PAIRS = PROJECT_ROOT.parent / "shared" / "data" / "pairs" / "pairs.csv"
#: at most this many faces (evenly spaced) per localization set: bounds memory at 256 px
LOCALIZATION_MAX_FACES = 2000


@dataclass(frozen=True)
class Variant:
    """One GAN of a sweep: ``folder`` names its stages (``<folder>/gan``, ``<folder>/quality``),
    ``key`` leads its summary row (e.g. ``{"tau": 0.3}``), ``set`` are its nested ``GanConfig``
    overrides, merged over the sweep's."""

    folder: str
    key: dict
    set: dict = field(default_factory=dict)


def add_arguments(p: argparse.ArgumentParser, *, what: str, steps: int = 600) -> None:
    """The options every sweep shares (``what``: "tau", "recipe", for the help texts)."""
    p.add_argument("--pairs", default=str(DEFAULT_PAIRS),
                   help="CSV of paired real/fake videos (default: ../shared/data/pairs/pairs.csv)")
    p.add_argument("--out", required=True, help="output folder (resumable)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu",
                   help="benchmark preset for split, crops and the GAN config (default: cpu)")
    p.add_argument("--size", type=int, help="GAN image size (cpu preset: 64, paper: 256)")
    p.add_argument("--steps", type=int, default=steps,
                   help=f"GAN steps per {what} (default: {steps})")
    p.add_argument("--eval-every", type=int, default=100,
                   help="validation (best-step choice) every N steps (default: 100)")
    p.add_argument("--batch", type=int, help="GAN batch size (cpu preset: 16, paper: 128)")
    p.add_argument("--width", type=int, help="ngf = ndf (cpu preset: 32, paper: 64)")
    p.add_argument("--seed", type=int, default=0, help=f"GAN training seed, same for every {what}")
    p.add_argument("--device", default=None, help="cpu | cuda | auto (default: the preset's)")
    p.add_argument("--collapse-ratio", type=float, default=0.1,
                   help="collapsed: mean predicted MRI on fakes < this x the true mean")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="any BenchmarkConfig key, e.g. data.max_frames=10 (repeatable)")


def sweep_config(args: argparse.Namespace) -> BenchmarkConfig:
    gan_set: dict = {"train": {"max_steps": args.steps, "eval_every": args.eval_every,
                               "checkpoint_every": args.eval_every, "seed": args.seed}}
    if args.size:
        gan_set["model"] = {"image_size": args.size}
    if args.width:
        gan_set.setdefault("model", {}).update(ngf=args.width, ndf=args.width)
    if args.batch:
        gan_set["train"]["batch_size"] = args.batch
    overrides = deep_merge({"pairs": str(Path(args.pairs).resolve()), "gan": gan_set},
                           parse_overrides(args.overrides))
    if args.device:
        overrides["device"] = args.device
    return load_config(BenchmarkConfig, str(PROJECT_ROOT / PRESETS[args.preset]), overrides)


def with_gan_set(cfg: BenchmarkConfig, overrides: dict) -> BenchmarkConfig:
    """``cfg`` with nested ``GanConfig`` overrides merged over its ``gan``."""
    return dataclasses.replace(cfg, gan=replace_keys(cfg.gan, overrides, "gan"))


def spaced(n: int, max_faces: int) -> list[int]:
    """Indices of ``n`` faces, at most ``max_faces`` (> 0) of them evenly spaced."""
    chosen = list(range(n))
    if max_faces and n > max_faces:
        chosen = chosen[::math.ceil(n / max_faces)]
    return chosen


@torch.no_grad()
def predict_set(gen: MRIGenerator, root: str, split: str | None, batch: int,
                max_faces: int = 0, size: int | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list]:
    """Predicted and true MRIs ``(N, 3, H, W)``, labels (1 = fake) and manifest rows of an
    MRI-DF split (``None``: every row); ``max_faces`` > 0: at most that many, evenly spaced;
    ``size``: faces and true MRIs at this size (default: the generator's; another size is
    resized to the generator's and its MRI back)."""
    ds = MriDfDataset(root, split, size or gen.image_size)
    chosen = spaced(len(ds), max_faces)
    preds, trues, labels = [], [], []
    for start in range(0, len(chosen), batch):
        items = [ds[i] for i in chosen[start:start + batch]]
        preds.append(gen.predict_tensor(torch.stack([it["image"] for it in items])).float().cpu())
        trues.append(torch.stack([it["mri"] for it in items]).float())
        labels += [int(it["label"]) for it in items]
    if not chosen:
        raise BenchmarkError("no face to score in the MRI-DF split", f"{root} ({split})")
    return torch.cat(preds), torch.cat(trues), torch.tensor(labels), [ds.rows[i] for i in chosen]


def intensity(pred: torch.Tensor, true: torch.Tensor, labels: torch.Tensor) -> dict:
    """Mean predicted and true MRI value over the fakes (an all-black generator: 0)."""
    fakes = labels == 1
    n = int(fakes.sum())
    return {"n_fake": n,
            "pred_mean_fake": float(pred[fakes].mean()) if n else math.nan,
            "true_mean_fake": float(true[fakes].mean()) if n else math.nan}


def localization(predicted: tuple, mean_map: torch.Tensor, collapse_ratio: float) -> dict:
    """:func:`mrigan.localization.localization_figures` (beside the all-black and mean-map
    baselines) of :func:`predict_set`'s result, with its size, identities and collapse test;
    sets beyond ``LOCALIZATION_MAX_FACES`` are scored on that many, evenly spaced."""
    pred, true, labels, rows = predicted
    keep = spaced(len(rows), LOCALIZATION_MAX_FACES)
    if len(keep) < len(rows):
        pred, true, labels, rows = pred[keep], true[keep], labels[keep], [rows[i] for i in keep]
    out: dict = {"n": len(rows), "n_real": int((labels == 0).sum()),
                 "identities": sorted({r["identity"] for r in rows}),
                 **intensity(pred, true, labels),
                 **localization_figures(pred, true, labels, mean_map)}
    out["collapsed"] = collapsed(out, collapse_ratio)
    return out


def collapsed(figures: dict, collapse_ratio: float) -> bool:
    """Nearly black maps: the mean predicted MRI on fakes is below ``collapse_ratio`` x true."""
    return bool(figures["pred_mean_fake"] < collapse_ratio * figures["true_mean_fake"])


def quality(cfg: BenchmarkConfig, gan: dict, mri_df_root: str, heldout_root: str, folder: Path,
            collapse_ratio: float) -> dict:
    """Held-out quality of the chosen (best-by-validation) and the last checkpoint; the chosen
    one's localization figures on the validation (``val``) and test identities (``test``)."""
    out: dict = {"best_step": gan["best_step"], "steps": gan["step"], "used": gan["used"],
                 "best_val_mean_ssim": gan["best_val_mean_ssim"]}
    batch = cfg.evaluate.batch_size
    last = str(Path(gan["checkpoint"]).parent / "last.pt")
    for which, ckpt in (("chosen", gan["checkpoint"]), ("last", last)):
        sub = folder / which
        exported = models.export_stage(ckpt, sub)
        q = evaluation.gan_quality_stage(cfg, exported["generator"], heldout_root, sub)
        gen = MRIGenerator.load(exported["generator"], device=cfg.device, batch_size=batch)
        held_out = predict_set(gen, heldout_root, None, batch)  # once: intensity and figures
        q.update(intensity(*held_out[:3]))
        out[which] = q
        if which == "chosen":
            mean_map = training_mean_map(MriDfDataset(mri_df_root, "train", gen.image_size))
            val = predict_set(gen, mri_df_root, "val", batch, LOCALIZATION_MAX_FACES)
            out["localization"] = {"val": localization(val, mean_map, collapse_ratio),
                                   "test": localization(held_out, mean_map, collapse_ratio)}
    out["collapsed"] = collapsed(out["chosen"], collapse_ratio)
    return out


def val_curve(checkpoint: str) -> list[list]:
    """The GAN run's validation history: ``[step, mean SSIM, mean MRI on fakes, select]`` per
    evaluation (``select`` None in histories written before it existed)."""
    history = Path(checkpoint).parents[1] / "eval_history.json"
    if not history.is_file():
        return []
    return [[e["step"], round(e["mean_ssim"], 4), round(e["mri_mean_fake"], 4),
             round(e["select"], 4) if math.isfinite(e.get("select", math.nan)) else None]
            for e in json.loads(history.read_text(encoding="utf-8"))]


def run_sweep(args: argparse.Namespace, variants: list[Variant], *, name: str, what: str,
              markdown: Callable[[dict], str], log=_log.info) -> dict:
    """Train and score every variant; writes ``<out>/<name>.json`` and ``<out>/<name>.md``."""
    cfg = sweep_config(args)
    if not Path(cfg.pairs).is_file():
        raise BenchmarkError("pairs CSV not found", cfg.pairs)
    out = check_output_dir(args.out, [cfg.pairs])
    out.mkdir(parents=True, exist_ok=True)
    st = Stages(out, log=log)
    split, mri_df, heldout = data_stages(cfg, st, log=log)
    rows = []
    for v in variants:
        vcfg = with_gan_set(cfg, v.set)
        gan = st.run(f"{v.folder}/gan", {"mri_df": mri_df["fingerprint"],
                                          "gan": models.gan_settings(vcfg)},
                     lambda f, c=vcfg: models.gan_stage(c, mri_df["root"], f))
        q = st.run(f"{v.folder}/quality",
                   {"gan": gan["fingerprint"], "heldout": heldout["fingerprint"],
                    "collapse_ratio": args.collapse_ratio,
                    "localization": {"mri_df": mri_df["fingerprint"],
                                     "max_faces": LOCALIZATION_MAX_FACES}},
                   lambda f, c=vcfg, g=gan: quality(c, g, mri_df["root"], heldout["root"], f,
                                                    args.collapse_ratio))
        rows.append({**v.key, **{k: val for k, val in q.items() if k != "fingerprint"},
                     "val_curve": val_curve(gan["checkpoint"])})
    gan_cfg = to_dict(models.gan_config(cfg, "", Path(".")))
    summary = {
        "what": what,
        "device": device_description(resolve_device(gan_cfg["train"]["device"])),
        "pairs": cfg.pairs, "splits": {k: {"identities": v["identities"], "videos": len(v["videos"])}
                                       for k, v in split["splits"].items()},
        "mri_df": mri_df["splits"], "heldout": heldout["splits"],
        "self_blend_per_real": cfg.data.self_blend_per_real,
        "gan": {"image_size": gan_cfg["model"]["image_size"], "ngf": gan_cfg["model"]["ngf"],
                "ndf": gan_cfg["model"]["ndf"], "batch_size": gan_cfg["train"]["batch_size"],
                "steps": args.steps, "eval_every": args.eval_every, "seed": args.seed,
                "lambda_recon": gan_cfg["loss"]["lambda_recon"], "crop": cfg.data.size,
                "select_by": gan_cfg["train"]["select_by"],
                "eval_samples": gan_cfg["data"]["eval_samples"]},
        "collapse_ratio": args.collapse_ratio, "rows": rows, "timings": st.timings}
    atomic_write_json(out / f"{name}.json", summary)
    atomic_write_text(out / f"{name}.md", markdown(summary))
    return summary


def header(s: dict, what: str) -> list[str]:
    """A sweep markdown's first line: the GAN, the steps per variant, the machine."""
    g = s["gan"]
    return [f"# {what}: {g['image_size']} px GAN (ngf/ndf {g['ngf']}/{g['ndf']}, batch "
            f"{g['batch_size']}, lambda {g['lambda_recon']:g}, seed {g['seed']}), {g['steps']} "
            f"steps each, on {s['device']}", ""]


def curve_table(s: dict, key: str, what: str, cell: Callable[[list], str]) -> list[str]:
    """Markdown lines: each row's validation curve (:func:`val_curve`), one column per
    evaluation step, ``cell`` formatting one ``[step, mean SSIM, mean MRI on fakes, select]``."""
    steps = sorted({e[0] for r in s["rows"] for e in r["val_curve"]})
    if not steps:
        return []
    lines = ["", f"Validation identities during training: {what} at each evaluation step.", "",
             f"| {key} | " + " | ".join(str(st) for st in steps) + " |",
             "| ---: |" + " ---: |" * len(steps)]
    for r in s["rows"]:
        at = {e[0]: e for e in r["val_curve"]}
        lines.append(f"| {r[key]} | " + " | ".join(
            cell(at[st]) if st in at else "" for st in steps) + " |")
    return lines


def main(prog: str, args: argparse.Namespace, run: Callable[..., dict],
         markdown: Callable[[dict], str], log=_log.info) -> int:
    """A sweep script's ``main``: ``run(args, log=log)``, its markdown on stdout; a user error
    is one line on stderr and exit status 2."""
    try:
        summary = run(args, log=log)
    except MriganError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    print(markdown(summary))
    return 0


__all__ = ["DEFAULT_PAIRS", "LOCALIZATION_MAX_FACES", "PRESETS", "Variant", "add_arguments",
           "curve_table", "header", "intensity", "localization", "main", "predict_set", "quality", "run_sweep",
           "sweep_config", "val_curve", "with_gan_set"]
