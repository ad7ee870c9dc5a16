"""The generator's model card in ``report.html`` (:mod:`mrigan.model_card`,
``results.json``'s ``generator.card``): its summary and limits once at the top, and - when the
card fails the one rule of :func:`mrigan.model_card.tells_real_from_fake` and the verdicts rest
on the generator's mean MRI - its warning next to EVERY verdict (never hidden)."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any


def card_html(generator: Mapping[str, Any]) -> str:
    """The card block under the report's header ('' for a generator without a card)."""
    card = generator.get("card")
    if not card:
        return ""
    limits = "".join(f"<li>{html.escape(s)}</li>" for s in card.get("limits", []))
    return (f'<div class="card" id="generator-card"><b>About this generator</b> '
            f'(model card, from <code>{html.escape(str(generator.get("path", "")))}</code>'
            f'.json): {html.escape(card.get("summary", ""))} Verdict threshold from '
            f'{html.escape(str(generator.get("verdict_from", "the config")))}.'
            f"<br><b>Limits</b><ul>{limits}</ul></div>")


def verdict_warning_html(generator: Mapping[str, Any], verdict: Mapping[str, Any]) -> str:
    """The card's warning beside one verdict ('' when there is none or a detector decided)."""
    warning = (generator.get("card") or {}).get("warning", "")
    if not warning or verdict.get("score_source") == "detector":
        return ""
    return f'<p class="warning card-warning">{html.escape(warning)}</p>'


CARD_CSS = (".card{background:#f4f4f4;border:1px solid #ccc;padding:6px 10px;font-size:13px}"
            ".card-warning{font-weight:bold;color:#b3261e}")

__all__ = ["CARD_CSS", "card_html", "verdict_warning_html"]
