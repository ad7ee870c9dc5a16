"""Learning curve of an MRI-GAN run: its held-out (validation) figures at every evaluation,
beside the all-black and the mean-map baselines, and its training loss, as one PNG.

Reads what the run wrote while training (nothing is recomputed): ``eval_history.json``
(``mrigan.train``: at each evaluation the localization figures of :mod:`mrigan.localization`
on the fixed validation sample and the baselines' figures on the same sample) and the
TensorBoard scalars ``loss/G_pixel`` / ``loss/G_ssim`` (the generator's reconstruction terms on
training batches). A validation curve that has flattened or fallen while the training loss
still falls says more steps will not help (the model fits the training groups, not new people);
one still rising at the end says they would.

    python bench/gan_curve.py RUN --out docs/default_generator_curve.png

``RUN``: a ``mrigan benchmark`` output folder (its ``gan/run``), a ``gan_recipes`` recipe
folder (``recipe_x/gan/run``) or a ``train-gan`` run folder. Prints the curve as a markdown
table (every ``--every``-th evaluation and the best one) on stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import matplotlib
from PIL import Image

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

#: (history key, panel title); each with its ``black_`` and ``mean_map_`` baselines
PANELS = (("select", "select = (face AUC + pixel AUC) / 2"),
          ("pixel_auc", "pixel AUC vs true-MRI mask (fakes)"),
          ("face_auc", "face AUC (mean MRI, fakes vs reals)"),
          ("fake_ssim", "mean SSIM pred vs true MRI (fakes)"))
TRAIN_TERMS = ("loss/G_pixel", "loss/G_ssim")


def find_run(path: Path) -> Path:
    for cand in (path, path / "gan" / "run", path / "run"):
        if (cand / "eval_history.json").is_file():
            return cand
    raise SystemExit(f"gan_curve: error: {path}: no eval_history.json (nor in gan/run, run)")


def training_terms(run: Path) -> dict[str, list[tuple[int, float]]]:
    """The generator's training loss terms from the run's TensorBoard events ({} without)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = run / "tb"
    if not tb.is_dir():
        return {}
    acc = EventAccumulator(str(tb), size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags().get("scalars", []))
    out = {}
    for tag in TRAIN_TERMS:
        if tag in tags:
            by_step = {e.step: e.value for e in acc.Scalars(tag)}  # a resumed run: last wins
            out[tag] = sorted(by_step.items())
    return out


def plot(history: list[dict], terms: dict, out: Path, title: str) -> None:
    steps = [e["step"] for e in history]
    best = max(history, key=lambda e: e["select"] if math.isfinite(e["select"]) else -1)
    fig, axes = plt.subplots(1, len(PANELS) + 1, figsize=(17, 3.3), dpi=72)
    for ax, (key, name) in zip(axes[:-1], PANELS, strict=True):
        ax.plot(steps, [e[key] for e in history], "o-", ms=2.5, lw=1.2, color="C0",
                label="generator")
        for base, style, label in (("mean_map_", "--", "mean map"), ("black_", ":", "all-black")):
            if base + key in history[0]:
                ax.axhline(history[0][base + key], ls=style, color="k", lw=1, label=label)
        ax.axvline(best["step"], color="C3", lw=0.8, alpha=0.6)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower right")
    ax = axes[-1]
    for i, (tag, pts) in enumerate(terms.items()):
        ax.plot([p[0] for p in pts], [p[1] for p in pts], lw=1, color=f"C{i + 1}",
                label=tag.split("/")[1] + " (train)")
    ax.axvline(best["step"], color="C3", lw=0.8, alpha=0.6)
    ax.set_title("training loss terms", fontsize=9)
    ax.set_yscale("log")
    ax.set_xlabel("step", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    if terms:
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.png")
    fig.savefig(tmp, dpi=72)
    plt.close(fig)
    with Image.open(tmp) as img:  # a 64-colour palette: a third of the bytes, same lines
        img.convert("RGB").quantize(64).save(tmp, optimize=True)
    tmp.replace(out)


def table(history: list[dict], every: int) -> str:
    best = max(history, key=lambda e: e["select"] if math.isfinite(e["select"]) else -1)
    keys = [k for k, _ in PANELS]
    lines = ["| step | " + " | ".join(keys) + " | mean MRI fakes / reals |",
             "| ---: |" + " ---: |" * (len(keys) + 1)]
    for base, name in (("black_", "*all-black*"), ("mean_map_", "*mean map*")):
        if base + "select" in history[0]:
            lines.append(f"| {name} | " + " | ".join(
                f"{history[0][base + k]:.3f}" for k in keys) + " | |")
    for i, e in enumerate(history):
        if i % every and e is not best and i != len(history) - 1:
            continue
        mark = " (chosen)" if e is best else ""
        lines.append(f"| {e['step']}{mark} | " + " | ".join(f"{e[k]:.3f}" for k in keys)
                     + f" | {e['mri_mean_fake']:.3f} / {e['mri_mean_real']:.3f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="benchmark folder, recipe folder or train-gan run")
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    p.add_argument("--title", default="", help="figure title (default: the run folder)")
    p.add_argument("--every", type=int, default=1, help="table: every N-th evaluation")
    args = p.parse_args(argv)
    run = find_run(args.run)
    history = json.loads((run / "eval_history.json").read_text(encoding="utf-8"))
    if not history or "select" not in history[0]:
        print(f"gan_curve: error: {run / 'eval_history.json'}: no localization figures "
              "(written before they existed)", file=sys.stderr)
        return 2
    n = len({e["step"] for e in history})
    plot(history, training_terms(run), args.out,
         args.title or f"{run}: held-out figures at {n} evaluations (red: chosen step)")
    print(table(history, max(1, args.every)))
    print(f"\nwrote {args.out} ({args.out.stat().st_size / 1e3:.0f} kB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
