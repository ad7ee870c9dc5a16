"""The tau question on real faces: MRI-GAN's reconstruction mix ``tau`` swept on real pairs.

MRI-GAN's reconstruction loss is ``lambda * (tau * L2 + (1 - tau) * sqrt(1 - SSIM))`` (paper:
``tau = 0.3``). This study trains one GAN per tau with everything else equal (same split, same
MRI-DF, same seed, steps, size, batch) and scores each on identities no GAN saw, side by side
in one run. The sweep machinery is :mod:`mrigan.app.benchmark.gan_sweep` (shared with
``bench/gan_recipes.py``): the benchmark's identity-grouped split of the pairs CSV, the MRI-DF
of the training identities (its ``val`` split: the validation identities that choose each
GAN's best step), the held-out MRI-DF of the test identities, the GAN stage, the export and the
GAN-quality stage (held-out mean SSIM of the predicted vs the true MRI, fakes and reals apart,
beside the all-black generator; the localization figures are in ``tau_sweep.json``). One split
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

from mrigan.app.benchmark import gan_sweep

TAUS = (0.3, 0.5, 0.7, 1.0)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--taus", type=float, nargs="+", default=list(TAUS))
    gan_sweep.add_arguments(p, what="tau")
    return p.parse_args(argv)


def run_sweep(args: argparse.Namespace, log=print) -> dict:
    variants = [gan_sweep.Variant(f"tau_{tau}", {"tau": tau}, {"loss": {"tau": tau}})
                for tau in args.taus]
    return gan_sweep.run_sweep(
        args, variants, name="tau_sweep", markdown=markdown, log=log,
        what="one MRI-GAN per tau, everything else equal; held-out mean SSIM of predicted vs "
             "true MRI on identities no GAN saw (test split), checkpoint chosen on the "
             "validation identities")


def markdown(s: dict) -> str:
    g = s["gan"]
    test = s["splits"]["test"]
    lines = [
        *gan_sweep.header(s, "tau sweep"),
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
    lines += gan_sweep.curve_table(
        s, "tau", "mean SSIM (mean predicted MRI on their fakes)",
        lambda e: f"{e[1]:.3f} ({e[2]:.3f})")
    return "\n".join(lines) + "\n"


def main(argv=None, log=print) -> int:
    return gan_sweep.main("tau_sweep", parse_args(argv), run_sweep, markdown, log=log)


if __name__ == "__main__":
    raise SystemExit(main())
