"""Which MRI-GAN training recipe does not collapse? Named recipes compared on real pairs.

Issue 21: CPU-sized MRI-GANs trained with the paper's recipe drew near-black maps, and a
constant map (the mean MRI of the training fakes) localized better than any of them. This
study trains one GAN per *recipe* (a named set of ``GanConfig`` overrides) with everything
else equal (same split, same MRI-DF, same seed, steps, size, batch) and judges each on the
**validation identities** by figures a black or constant map cannot win
(:mod:`mrigan.localization`): ``select`` = (face AUC + pixel AUC) / 2, pixel AUC against the
true-MRI mask (true MRI > 0.1), face AUC (fakes vs reals by the mean predicted MRI), fake SSIM,
each beside the all-black map and the mean map (mean true MRI of the training split's fakes).
The test identities' figures are shown beside them but never used to choose or rank.

Built-in recipes (the paper's kept as ``paper``; balanced fake/real sampling is in every one):

* ``paper``: the preset's recipe (tau 0.3, SSIM term over every face, one lr for G and D,
  ``train.select_by`` as the preset gives it: ``select`` in the cpu preset);
* ``ssim_fakes``: ``loss.ssim_on=fakes`` (a real face's black true MRI no longer pulls every
  output to black through the SSIM term);
* ``weighted``: ``loss.manipulated_weight=4`` (pixel term x5 on manipulated pixels);
* ``tau1``: ``loss.tau=1.0`` (L2 only, no SSIM term);
* ``d_slow``: ``optim.lr_d_factor=0.25`` (discriminator at a quarter of the generator's lr);
* ``fakes_weighted``: ``ssim_fakes`` and ``weighted`` together.

``--recipes`` picks built-ins (default: all); ``--recipe NAME:key=value,key=value`` adds one of
your own (``GanConfig`` keys, values as YAML scalars, no commas inside a value), e.g.
``--recipe l1:loss.pixel=l1,loss.ssim_on=fakes``. The sweep machinery is
:mod:`mrigan.app.benchmark.gan_sweep` (shared with ``bench/tau_sweep.py``); stages live in
``<out>/recipe_<name>/``, resumable. Writes ``<out>/gan_recipes.json`` and
``<out>/gan_recipes.md``.

    # CPU, 64 px, all pairs with one self-blended fake per real training face:
    OMP_NUM_THREADS=1 .venv/bin/python bench/gan_recipes.py --out runs/recipes_cpu \\
        --pairs ../shared/data/pairs/all_pairs.csv --set data.self_blend_per_real=1 \\
        --steps 300 --eval-every 50 --width 16
"""

from __future__ import annotations

import argparse
import math
import re

from mrigan.app.benchmark import gan_sweep
from mrigan.config import ConfigError, parse_overrides

RECIPES: dict[str, dict] = {
    "paper": {},
    "ssim_fakes": {"loss": {"ssim_on": "fakes"}},
    "weighted": {"loss": {"manipulated_weight": 4.0}},
    "tau1": {"loss": {"tau": 1.0}},
    "d_slow": {"optim": {"lr_d_factor": 0.25}},
    "fakes_weighted": {"loss": {"ssim_on": "fakes", "manipulated_weight": 4.0}},
}
#: the figures of the ranking table, ``select`` (the ranking figure) first
FIGURES = ("select", "pixel_auc", "face_auc", "fake_ssim")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipes", nargs="*", default=list(RECIPES), choices=list(RECIPES),
                   metavar="NAME", help=f"built-in recipes to run (default: all: "
                                        f"{', '.join(RECIPES)})")
    p.add_argument("--recipe", dest="custom", action="append", default=[],
                   metavar="NAME:KEY=VALUE,...", help="a recipe of your own (repeatable)")
    gan_sweep.add_arguments(p, what="recipe", steps=300)
    return p.parse_args(argv)


def flatten(d: dict, prefix: str = "") -> dict:
    out: dict = {}
    for k, v in d.items():
        out.update(flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def parse_recipe(text: str) -> tuple[str, dict]:
    """``"NAME:loss.tau=0.5,optim.lr=1e-4"`` -> ``("NAME", {"loss": {"tau": 0.5}, ...})``."""
    name, sep, body = text.partition(":")
    if not sep or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ConfigError(f"--recipe {text!r}: expected NAME:key=value,key=value with NAME of "
                          "letters, digits, '_', '-', '.'")
    return name, parse_overrides([item for item in body.split(",") if item.strip()])


def recipes(args: argparse.Namespace) -> list[gan_sweep.Variant]:
    chosen = [(name, RECIPES[name]) for name in args.recipes] + [
        parse_recipe(text) for text in args.custom]
    names = [name for name, _ in chosen]
    if len(set(names)) != len(names):
        raise ConfigError(f"recipe names repeat: {names}")
    return [gan_sweep.Variant(f"recipe_{name}", {"recipe": name, "settings": flatten(s)}, s)
            for name, s in chosen]


def run_sweep(args: argparse.Namespace, log=print) -> dict:
    return gan_sweep.run_sweep(
        args, recipes(args), name="gan_recipes", markdown=markdown, log=log,
        what="one MRI-GAN per recipe, everything else equal; localization figures of each "
             "one's chosen checkpoint on the validation identities (the judge: ranks) and on "
             "the test identities (shown, not used to choose), beside the all-black and the "
             "mean-training-MRI maps")


def ranked(rows: list[dict]) -> list[dict]:
    """Rows best first by the validation ``select`` (NaN last); test figures play no part."""
    def key(r: dict) -> float:
        v = r["localization"]["val"]["select"]
        return -v if math.isfinite(v) else math.inf
    return sorted(rows, key=key)


def _cells(loc: dict, prefix: str = "") -> str:
    return " | ".join(f"{loc[prefix + f]:.3f}" for f in FIGURES)


def markdown(s: dict) -> str:
    g = s["gan"]
    rows = ranked(s["rows"])
    lines = gan_sweep.header(s, "GAN recipes")
    if not rows:
        return "\n".join(lines) + "\n"
    val, test = rows[0]["localization"]["val"], rows[0]["localization"]["test"]
    trainval = s["mri_df"]
    train = trainval.get("train", {})
    lines += [
        f"Judge: every face of the validation identities ({', '.join(val['identities'])}; "
        f"{val['n_fake']} fake, {val['n_real']} real faces); each recipe's checkpoint chosen "
        f"by `{g['select_by']}` on {g['eval_samples']} of them every {g['eval_every']} steps. "
        f"Ranked by validation `select`; the test identities ({', '.join(test['identities'])}; "
        f"{test['n_fake']} fake, {test['n_real']} real faces) are shown, not used to choose.",
        f"Training MRI-DF: {train.get('rows', 0)} faces, {train.get('fake_rows', 0)} fake of "
        f"which {train.get('self_blend_rows', 0)} self-blended "
        f"({s['self_blend_per_real']} per real training face).",
        "`select` = (face AUC + pixel AUC) / 2; pixel AUC: predicted MRI vs the true-MRI mask "
        "(true MRI > 0.1) over fake faces' pixels; face AUC: fakes vs reals by mean predicted "
        "MRI; fake SSIM: mean SSIM of predicted vs true MRI on fakes. `pred/true`: mean MRI on "
        f"validation fakes; `collapsed`: pred < {s['collapse_ratio']:g} x true.", "",
        "| rank | recipe | settings | best step | val select | val pixel AUC | val face AUC "
        "| val fake SSIM | val pred/true | collapsed | test select | test pixel AUC "
        "| test face AUC | test fake SSIM |",
        "| ---: | :--- | :--- | ---: | ---: | ---: | ---: | ---: | ---: | :---: | ---: | ---: "
        "| ---: | ---: |"]
    for base, name in (("black_", "all-black map"), ("mean_map_", "mean training MRI map")):
        lines.append(f"| | *{name}* | | | {_cells(val, base)} | | | {_cells(test, base)} |")
    for i, r in enumerate(rows, 1):
        v, t = r["localization"]["val"], r["localization"]["test"]
        settings = ", ".join(f"{k}={x}" for k, x in r["settings"].items()) or "(preset)"
        lines.append(
            f"| {i} | {r['recipe']} | {settings} | {r['best_step']} / {r['steps']} "
            f"| {_cells(v)} | {v['pred_mean_fake']:.4f} / {v['true_mean_fake']:.4f} "
            f"| {'yes' if v['collapsed'] else 'no'} | {_cells(t)} |")
    lines += gan_sweep.curve_table(
        s, "recipe", "`select` on the fixed sample (mean predicted MRI on its fakes)",
        lambda e: f"{e[3]:.3f} ({e[2]:.3f})" if e[3] is not None else f"({e[2]:.3f})")
    return "\n".join(lines) + "\n"


def main(argv=None, log=print) -> int:
    return gan_sweep.main("gan_recipes", parse_args(argv), run_sweep, markdown, log=log)


if __name__ == "__main__":
    raise SystemExit(main())
