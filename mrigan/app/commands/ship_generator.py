"""``mrigan ship-generator RUN``: a finished ``mrigan benchmark`` run's generator as the
package's default generator (fp16 safetensors + a JSON sidecar with its model card).

    mrigan benchmark --pairs ../shared/data/pairs/all_pairs.csv \\
        --labelled ../shared/data/labelled_unpaired/labels_all.csv --preset default_generator --out RUN
    mrigan ship-generator RUN            # -> mrigan/weights/default_generator.safetensors (+ .json)

Ship only a run whose generator beats the shipped one on every held-out figure
(``bench/generator_figures.py RUN --against shipped``, README "The default generator").

The card's figures are that run's held-out figures (see :mod:`mrigan.app.benchmark.card`);
``mrigan analyze`` uses these weights when no ``--generator`` is given.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mrigan.app.benchmark.card import ship_generator
from mrigan.model_card import DEFAULT_GENERATOR


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", type=Path, help="a finished `mrigan benchmark` output folder")
    parser.add_argument("--out", type=Path, default=DEFAULT_GENERATOR,
                        help=f"weights to write (default: {DEFAULT_GENERATOR})")


def run(args: argparse.Namespace) -> int:
    weights, sidecar, card = ship_generator(args.run, args.out)
    print(f"wrote {weights} ({weights.stat().st_size / 1e6:.2f} MB) and {sidecar}")
    print(card["summary"])
    q = card["held_out"]["mean_ssim"]
    print(f"held-out mean SSIM: fakes {q['fake']['generator']} (all-black "
          f"{q['fake']['all_black']}), reals {q['real']['generator']} (all-black "
          f"{q['real']['all_black']}); verdict threshold {card['verdict']['mri_threshold']} "
          f"(fraction {card['verdict']['fake_fraction']}, {card['verdict']['chosen_on']})")
    return 0
