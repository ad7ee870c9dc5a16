"""Held-out figures of generators on a finished ``mrigan benchmark`` run, beside the all-black
and mean-map baselines: test-group localization (fake SSIM, pixel AUC against the true-MRI
mask), pixel AUC on the FF++ example frames against their ground-truth masks, and the video AUC
(bootstrap 95% CI) of the mean-MRI verdict on the test groups' and the labelled videos, its
rule chosen on the validation groups (:mod:`mrigan.app.benchmark.generator_figures`).

    python bench/generator_figures.py RUN --out runs/figures \\
        --generator new=RUN/export/generator.safetensors \\
        --generator shipped=mrigan/weights/default_generator.safetensors

Without ``--generator``: the run's export (``run``) and the shipped default (``shipped``).
With ``--against NAME`` the last lines say, per held-out figure, whether the first generator
beats NAME (the rule for shipping a new default: it must beat it on every one).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mrigan.app.benchmark.generator_figures import beats, generator_figures, markdown
from mrigan.config import PROJECT_ROOT
from mrigan.errors import MriganError
from mrigan.fileio import atomic_write_json, atomic_write_text
from mrigan.model_card import DEFAULT_GENERATOR


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="a finished `mrigan benchmark` folder")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--generator", action="append", default=[], metavar="NAME=PATH")
    p.add_argument("--examples", type=Path,
                   default=PROJECT_ROOT.parent / "shared" / "data" / "ff_examples",
                   help="FF++ example frames with masks (default: ../shared/data/ff_examples)")
    p.add_argument("--against", help="name of the generator the first one must beat")
    args = p.parse_args(argv)
    gens = dict(g.split("=", 1) for g in args.generator) or {
        "run": str(args.run / "export" / "generator.safetensors"),
        "shipped": str(DEFAULT_GENERATOR)}
    try:
        res = generator_figures(args.run, gens, args.out, args.examples)
    except MriganError as exc:
        print(f"generator_figures: error: {exc}", file=sys.stderr)
        return 2
    text = markdown(res)
    if args.against:
        first = next(iter(gens))
        won = beats(res, first, args.against)
        res["beats"] = {"candidate": first, "incumbent": args.against, "figures": won,
                        "every": all(won.values())}
        text += (f"\n{first} beats {args.against} on: "
                 + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in won.items())
                 + f" -> every figure: {'yes' if all(won.values()) else 'no'}\n")
    atomic_write_json(args.out / "figures.json", res)
    atomic_write_text(args.out / "figures.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
