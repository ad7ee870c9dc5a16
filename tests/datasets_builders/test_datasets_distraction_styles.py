"""Distraction styles: today's default draws exactly the plans it drew before styles existed;
the paper's preset (5 named colours, font scale 1-6, thickness 1-3, one or more per video)
draws only from its ranges; the per-source augmentation switch of the builder."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from datasets_builders.augment import PlanRunner, make_plan, plan_label
from datasets_builders.build_config import BuildConfig, BuildSourceConfig
from datasets_builders.distractions import (
    NAMED_COLORS,
    PAPER_DISTRACTIONS,
    DistractionStyle,
)
from mrigan.config import ConfigError, load_config

#: sha256 of 300 default-style plans, computed with the code before styles existed (commit 1ef767f)
DEFAULT_PLANS_SHA = "228e2a6f4779a1c8992a831528c2df8663f29329cc63b5ab09dba4f08c00396a"


def _plans(style=None, n=100, seeds=range(3), frac=0.5):
    return [make_plan(s, f"v{i}", augment_fraction=frac, distraction_fraction=frac,
                      distraction_style=style) for s in seeds for i in range(n)]


def test_default_style_draws_todays_plans():
    plans = _plans()
    assert hashlib.sha256(json.dumps(plans, sort_keys=True).encode()).hexdigest() == DEFAULT_PLANS_SHA
    assert plans == _plans(DistractionStyle())
    assert all(p["distraction"] is None or isinstance(p["distraction"], dict) for p in plans)


def test_paper_preset_draws_only_from_its_ranges():
    plans = _plans(PAPER_DISTRACTIONS, n=200, seeds=range(2), frac=1.0)
    assert plans == _plans(PAPER_DISTRACTIONS, n=200, seeds=range(2), frac=1.0)  # seeded
    drawn = []
    for p in plans:
        dis = p["distraction"]
        items = [dis] if isinstance(dis, dict) else dis
        assert 1 <= len(items) <= 3
        drawn += items
    counts = {len([p["distraction"]] if isinstance(p["distraction"], dict) else p["distraction"])
              for p in plans}
    assert counts == {1, 2, 3}  # "one or more per video"
    allowed = {tuple(c) for c in NAMED_COLORS.values()}
    assert {tuple(d["color"]) for d in drawn} == allowed  # all 5 named colours, nothing else
    texts = [d for d in drawn if d["kind"] == "text"]
    assert {d["size"] for d in texts} == {1.0, 2.0, 3.0, 4.0, 5.0, 6.0}
    assert {d["thickness"] for d in texts} == {1, 2, 3}
    # today's default draws outside the paper's ranges (so the test above can fail)
    today = [p["distraction"] for p in _plans(frac=1.0) if p["distraction"]["kind"] == "text"]
    assert any(d["size"] < 1.0 or d["thickness"] > 3 for d in today)


def test_several_distractions_are_all_drawn_and_labelled(ff_examples):
    from mrigan.fileio import read_image

    frame = read_image(ff_examples / "ex_original.png")
    plan = next(p for p in _plans(PAPER_DISTRACTIONS, n=200, frac=1.0)
                if isinstance(p["distraction"], list) and len(p["distraction"]) == 3
                and all(d["motion"] == "static" for d in p["distraction"]))
    label = plan_label(plan)
    assert label.count(":static") == 3
    full = PlanRunner({**plan, "augmentation": None})(frame, 0)
    one = PlanRunner({**plan, "augmentation": None, "distraction": plan["distraction"][:1]})(frame, 0)
    assert (np.abs(full.astype(int) - frame).sum(-1) > 0).sum() > (np.abs(one.astype(int) - frame).sum(-1) > 0).sum()
    # a fake and its original get the same overlay: the runner is a pure function of the frame
    assert np.array_equal(full, PlanRunner({**plan, "augmentation": None})(frame, 0))


@pytest.mark.parametrize("bad", [{"colors": ["purple"]}, {"text_scale": [3, 1]},
                                 {"text_thickness": [0, 3]}, {"count": [0, 2]}])
def test_bad_styles_name_the_key(tmp_path, bad):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps({"sources": [{"kind": "csv", "root": "x.csv"}],
                               "augment": {"distraction": bad}}))
    with pytest.raises(ConfigError, match="augment.distraction"):
        load_config(BuildConfig, cfg)


def test_paper_config_uses_the_paper_distractions_and_augments_dfdc_only():
    cfg = load_config(BuildConfig, "configs/build_mri_df_paper.yaml")
    assert cfg.augment.distraction == PAPER_DISTRACTIONS
    assert {s.label: s.augment for s in cfg.sources} == {
        "dfdc": True, "celebdf": False, "ffhq": False, "fdf": False}
    assert load_config(BuildConfig, "configs/build_mri_df.yaml").augment.distraction == DistractionStyle()
    assert BuildSourceConfig(root="x").augment is True  # today's default: every source augmented


def test_new_settings_at_their_old_value_keep_older_builds_resumable():
    """A folder built before the multi-face rule, distraction styles and the per-source switch
    existed has a fingerprint without them: with their defaults it still matches; any other
    value is a different build (refused on resume)."""
    from datasets_builders.build_config import BuildAugmentConfig, FaceDetectionConfig
    from datasets_builders.build_records import differing_keys, fingerprint

    base = BuildConfig(sources=(BuildSourceConfig(root="x.csv"),))
    fp = fingerprint(base)
    assert not any(k.startswith("augment.distraction.") or "multi_face" in k for k in fp)
    assert fp["sources"] == [{"kind": "csv", "root": "x.csv", "name": "", "fraction": 1.0,
                              "detect_faces": True, "include_reals": True, "options": {}}]
    paper = BuildConfig(sources=(BuildSourceConfig(root="x.csv", augment=False),),
                        augment=BuildAugmentConfig(distraction=PAPER_DISTRACTIONS),
                        faces=FaceDetectionConfig(drop_multi_face=True))
    assert differing_keys(fp, fingerprint(paper)) == [
        "augment.distraction.colors", "augment.distraction.count", "augment.distraction.text_scale",
        "augment.distraction.text_thickness", "augment.distraction.whole_units",
        "faces.drop_multi_face", "sources"]
