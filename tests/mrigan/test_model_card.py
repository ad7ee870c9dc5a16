"""The one rule that decides the "cannot tell real from fake" warning (mrigan.model_card), and
card validation in the exported sidecar (old sidecars without a card still load)."""

from __future__ import annotations

import pytest

from mrigan.checkpoint import CheckpointError
from mrigan.model_card import (
    MIN_AUC,
    MIN_VIDEOS,
    cannot_tell_warning,
    tells_real_from_fake,
    validate_card,
)


def _card(*sets, videos=MIN_VIDEOS):
    return {"video_level": {f"s{i}": {"auc": a, "auc_ci95": ci, "videos": videos}
                            for i, (a, ci) in enumerate(sets)}}


@pytest.mark.parametrize(("sets", "ok"), [
    ([(0.9, [0.6, 1.0])], True),
    ([(0.9, [0.6, 1.0]), (0.8, [0.55, 0.95])], True),
    ([(MIN_AUC, [0.51, 0.9])], True),                     # AUC exactly at the bar
    ([(MIN_AUC - 0.01, [0.51, 0.9])], False),             # under the bar
    ([(0.9, [0.5, 1.0])], False),                         # CI touches chance
    ([(0.9, [0.6, 1.0]), (0.5, [0.5, 0.5])], False),      # one set fails: the card fails
    ([(0.9, None)], False),                               # no interval: not shown
    ([(None, None)], False),                              # no AUC (one class only)
    ([], False),                                          # no held-out figure at all
])
def test_tells_real_from_fake_rule(sets, ok):
    card = validate_card(_card(*sets))
    assert tells_real_from_fake(card) is ok
    if not ok:
        assert "could not tell real from fake" in cannot_tell_warning(card)


@pytest.mark.parametrize(("card", "key"), [
    ([], "JSON object"), ({"limits": "one"}, "limits"), ({"limits": [1]}, "limits"),
    ({"verdict": {"mri_threshold": 2}}, "mri_threshold"),
    ({"verdict": {"fake_fraction": float("nan")}}, "fake_fraction"),
    ({"video_level": {"test": {"auc": "high"}}}, "auc"),
    ({"video_level": {"test": {"auc": 0.6, "auc_ci95": [0.1]}}}, "auc_ci95"),
])
def test_bad_cards_are_refused_naming_the_key(card, key, tmp_path):
    with pytest.raises(CheckpointError, match=key) as err:
        validate_card(card, tmp_path / "g.json")
    assert "g.json" in str(err.value)


def test_small_video_sets_are_no_evidence_either_way():
    """2 held-out videos give AUC 1.0 with a degenerate [1, 1] interval: not enough."""
    small = _card((1.0, [1.0, 1.0]), videos=2)
    assert not tells_real_from_fake(small)  # no set large enough
    both = {"video_level": {**_card((0.9, [0.6, 1.0]))["video_level"],
                            "tiny": {"auc": 0.0, "auc_ci95": [0.0, 0.0], "videos": 2}}}
    assert tells_real_from_fake(both)  # the small set is ignored, the large one passes
