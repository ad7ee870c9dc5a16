"""A generator's model card (in its JSON sidecar) and the shipped default generator.

An exported generator's sidecar (``mrigan export-generator``) may carry a ``model_card``
object: what the weights were trained on, with which settings, what they score on videos they
never saw, the verdict threshold chosen on validation videos, and plain-sentence ``limits``.
``mrigan ship-generator`` writes one from a ``mrigan benchmark --preset default_generator``
run. Sidecars without a card (every export before this) load as before.

:func:`tells_real_from_fake` is the ONE rule that decides whether ``mrigan analyze`` warns next
to every verdict that the generator cannot tell real from fake videos: a card's generator
"tells real from fake" only if, on every held-out video set of at least :data:`MIN_VIDEOS`
videos it reports, the video-level AUC of its mean-MRI verdict score is at least
:data:`MIN_AUC` AND the lower end of that AUC's bootstrap 95% interval is above 0.5 (chance).
Smaller sets are no evidence either way (2 videos give an AUC of 0 or 1 and a degenerate
interval); a card with no set of that size fails the rule.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from mrigan.checkpoint import CheckpointError

CARD_FORMAT = "mrigan-model-card/1"
#: video-level AUC a generator's mean-MRI score must reach on held-out videos (see module doc)
MIN_AUC = 0.7
#: held-out video sets smaller than this do not count for the rule (see module doc)
MIN_VIDEOS = 10
#: the generator ``mrigan analyze`` uses when no ``--generator`` is given (package data)
DEFAULT_GENERATOR = Path(__file__).resolve().parent / "weights" / "default_generator.safetensors"
#: the mean-MRI face threshold when neither the config nor a card gives one
DEFAULT_MRI_THRESHOLD = 0.08
DEFAULT_FAKE_FRACTION = 0.3

RULE = (f"a generator tells real from fake only if, on every held-out video set of at least "
        f"{MIN_VIDEOS} videos in its card (and there is one), the video-level AUC of its mean-MRI "
        f"verdict score is >= {MIN_AUC} and the AUC's bootstrap 95% interval lies above 0.5")


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def validate_card(card: Any, path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Check the parts of a card that code reads; raises :class:`CheckpointError` naming the
    file. Returns the card."""
    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"sidecar's model_card: {what}", path)

    if not isinstance(card, dict):
        raise bad(f"must be a JSON object, got {type(card).__name__}")
    limits = card.get("limits", [])
    if not isinstance(limits, list) or not all(isinstance(s, str) for s in limits):
        raise bad("'limits' must be a list of sentences (strings)")
    verdict = card.get("verdict", {})
    if not isinstance(verdict, dict):
        raise bad("'verdict' must be a JSON object")
    for key in ("mri_threshold", "fake_fraction"):
        if key in verdict and not (_number(verdict[key]) and 0 <= verdict[key] <= 1):
            raise bad(f"verdict.{key} must be a number in [0, 1], got {verdict[key]!r}")
    video = card.get("video_level", {})
    if not isinstance(video, dict) or not all(isinstance(v, dict) for v in video.values()):
        raise bad("'video_level' must map test-set names to objects")
    for name, v in video.items():
        auc, ci = v.get("auc"), v.get("auc_ci95")
        if auc is not None and not _number(auc):
            raise bad(f"video_level.{name}.auc must be a number or null, got {auc!r}")
        if ci is not None and not (isinstance(ci, list) and len(ci) == 2
                                   and all(c is None or _number(c) for c in ci)):
            raise bad(f"video_level.{name}.auc_ci95 must be [low, high], got {ci!r}")
    return card


def _counted_sets(card: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The card's held-out video sets large enough to count for the rule (>= MIN_VIDEOS)."""
    return {k: v for k, v in (card.get("video_level") or {}).items()
            if isinstance(v.get("videos"), int) and v["videos"] >= MIN_VIDEOS}


def tells_real_from_fake(card: dict[str, Any]) -> bool:
    """The rule of the module docstring (:data:`RULE`), applied to a validated card."""
    sets = _counted_sets(card)
    if not sets:
        return False
    for v in sets.values():
        auc, ci = v.get("auc"), v.get("auc_ci95") or [None, None]
        if not _number(auc) or auc < MIN_AUC or not _number(ci[0]) or ci[0] <= 0.5:
            return False
    return True


def cannot_tell_warning(card: dict[str, Any]) -> str:
    """The sentence shown next to every verdict of a generator that fails the rule."""
    sets = _counted_sets(card)
    figures = "; ".join(
        f"{name}: AUC {_fmt(v.get('auc'))} [{_fmt((v.get('auc_ci95') or [None])[0])}, "
        f"{_fmt((v.get('auc_ci95') or [None, None])[1])}] on {v['videos']} videos"
        for name, v in sets.items()) or f"no held-out set of {MIN_VIDEOS} or more videos"
    return ("This generator could not tell real from fake videos it was not trained on "
            f"({figures}); this verdict is not evidence either way.")


def _fmt(x: Any) -> str:
    return f"{x:.2f}" if _number(x) else "n/a"


def card_summary(card: dict[str, Any]) -> dict[str, Any]:
    """What ``mrigan analyze`` records in results.json and shows in its report."""
    ok = tells_real_from_fake(card)
    return {"format": card.get("format"), "summary": card.get("summary", ""),
            "training_data": card.get("training_data", {}),
            "held_out_mean_ssim": card.get("held_out", {}).get("mean_ssim"),
            "video_level": card.get("video_level", {}), "verdict": card.get("verdict", {}),
            "limits": list(card.get("limits", [])), "tells_real_from_fake": ok,
            "rule": RULE, "warning": "" if ok else cannot_tell_warning(card)}


__all__ = ["CARD_FORMAT", "DEFAULT_FAKE_FRACTION", "DEFAULT_GENERATOR", "DEFAULT_MRI_THRESHOLD",
           "MIN_AUC", "MIN_VIDEOS", "RULE", "card_summary", "cannot_tell_warning", "tells_real_from_fake",
           "validate_card"]
