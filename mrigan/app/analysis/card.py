"""What an analysis takes from its generator's model card (:mod:`mrigan.model_card`).

* The verdict's face threshold and fake fraction: when the config leaves them null (the
  default) and no detector is given, the card's (chosen on the validation videos of the run
  that trained the generator); else 0.08 and 0.3. ``--set verdict.mri_threshold=X`` wins.
* ``results.json``'s ``generator.card``: the card's summary, its ``limits`` and, when the card
  fails the one rule of :func:`mrigan.model_card.tells_real_from_fake`, the ``warning`` that
  the report and the CLI show next to every verdict resting on the generator's mean MRI.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from mrigan.app.analysis.config import AnalyzeConfig
from mrigan.model_card import (
    DEFAULT_FAKE_FRACTION,
    DEFAULT_MRI_THRESHOLD,
    card_summary,
    validate_card,
)


def generator_card(generator: Any) -> dict[str, Any] | None:
    """The model card of a loaded generator's sidecar, validated; None without one."""
    card = (getattr(generator, "metadata", None) or {}).get("model_card")
    if card is None:
        return None
    return validate_card(card, (generator.metadata or {}).get("source"))


def resolve_verdict(config: AnalyzeConfig, card: dict[str, Any] | None,
                    has_detector: bool) -> tuple[AnalyzeConfig, str]:
    """``config`` with the null verdict values filled in, and where they came from."""
    v = config.verdict
    from_card = ((card or {}).get("verdict") or {}) if not has_detector else {}
    if from_card.get("rule", v.rule) != v.rule:
        from_card = {}  # the card's threshold belongs to another rule
    threshold = v.mri_threshold
    fraction = v.fake_fraction
    used_card = False
    if threshold is None:
        used_card |= "mri_threshold" in from_card
        threshold = from_card.get("mri_threshold", DEFAULT_MRI_THRESHOLD)
    if fraction is None:
        used_card |= "fake_fraction" in from_card
        fraction = from_card.get("fake_fraction", DEFAULT_FAKE_FRACTION)
    source = "the generator's model card" if used_card else "the config"
    return replace(config, verdict=replace(v, mri_threshold=float(threshold),
                                           fake_fraction=float(fraction))), source


def card_info(card: dict[str, Any] | None, has_detector: bool) -> dict[str, Any] | None:
    """``results.json``'s ``generator.card``; ``warning`` is only set when the verdicts rest
    on the generator's mean MRI (no detector)."""
    if card is None:
        return None
    info = card_summary(card)
    if has_detector:
        info["warning"] = ""
    return info


__all__ = ["card_info", "generator_card", "resolve_verdict"]
