"""``bench/gan_recipes.py`` end to end in-process on the shared real pairs (tiny sizes, 2 recipes,
2 steps), with self-blended fakes of the training faces: each recipe's settings reach its GAN,
every recipe is judged on the validation identities beside the all-black and mean-map
baselines, and the ranking reads validation figures only."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from _media import bench_module

from mrigan.mri_df_format import read_manifest

gan_recipes = bench_module("gan_recipes")

TINY = ["--steps", "2", "--eval-every", "2", "--size", "32", "--width", "8",
        "--set", "data.every=100", "--set", "data.max_frames=1", "--set", "data.size=64",
        "--set", "data.max_side=480", "--set", "gan.set.data.eval_samples=4",
        "--set", "data.self_blend_per_real=1"]


def test_gan_recipes_judge_on_validation_and_rank_by_it(tmp_path, shared_data, capsys,
                                                        two_torch_threads):
    out = tmp_path / "recipes"
    argv = ["--pairs", str(shared_data / "pairs" / "pairs.csv"), "--out", str(out), *TINY,
            "--recipes", "paper", "--recipe", "mine:loss.ssim_on=fakes,optim.lr_d_factor=0.5"]
    assert gan_recipes.main(argv, log=lambda _: None) == 0
    summary = json.loads((out / "gan_recipes.json").read_text())
    assert [r["recipe"] for r in summary["rows"]] == ["paper", "mine"]
    assert summary["rows"][1]["settings"] == {"loss.ssim_on": "fakes", "optim.lr_d_factor": 0.5}

    # self-blends: in the training build's train split only, in its stage's settings only
    stage = {n: json.loads((out / n / "stage.json").read_text())["settings"]
             for n in ("mri_df", "heldout_mri_df")}
    assert stage["mri_df"]["self_blend_per_real"] == 1
    assert "self_blend_per_real" not in stage["heldout_mri_df"]
    blended = [r for r in read_manifest(out / "mri_df" / "data") if r["method"] == "self_blend"]
    assert blended and {r["split"] for r in blended} == {"train"}
    assert summary["mri_df"]["train"]["self_blend_rows"] == len(blended)
    assert not any(r["method"] == "self_blend"
                   for r in read_manifest(out / "heldout_mri_df" / "data"))

    # each recipe's settings reach its GAN config and its training
    lr_ratio = {}
    for r in summary["rows"]:
        gan = json.loads((out / f"recipe_{r['recipe']}" / "gan" / "stage.json").read_text())
        loss, optim = gan["settings"]["gan"]["loss"], gan["settings"]["gan"]["optim"]
        # (at their older defaults the stage leaves them out: models.GAN_ADDED_LATER)
        assert (loss.get("ssim_on", "all"), optim.get("lr_d_factor", 1.0)) == (
            ("fakes", 0.5) if r["recipe"] == "mine" else ("all", 1.0))
        assert loss["tau"] == 0.3 and gan["settings"]["gan"]["train"]["max_steps"] == 2
        ckpt = torch.load(out / f"recipe_{r['recipe']}" / "gan" / "run" / "checkpoints" /
                          "last.pt", map_location="cpu", weights_only=False)
        lr_ratio[r["recipe"]] = (ckpt["opt_d"]["param_groups"][0]["lr"]
                                 / ckpt["opt_g"]["param_groups"][0]["lr"])
    assert lr_ratio == pytest.approx({"paper": 1.0, "mine": 0.5})

    # judged on the validation identities, shown on the test identities, beside baselines
    val_ids, test_ids = (set(summary["splits"][k]["identities"]) for k in ("val", "test"))
    assert val_ids and test_ids and not val_ids & test_ids
    for r in summary["rows"]:
        for which, ids in (("val", val_ids), ("test", test_ids)):
            loc = r["localization"][which]
            assert set(loc["identities"]) == ids and loc["n_fake"] >= 1 and loc["n_real"] >= 1
            for f in ("select", "pixel_auc", "face_auc", "fake_ssim"):
                assert math.isfinite(loc[f]) and -1 <= loc[f] <= 1
            # a constant map cannot tell fakes from reals; black cannot rank pixels either
            assert loc["black_face_auc"] == loc["mean_map_face_auc"] == 0.5
            assert loc["black_pixel_auc"] == 0.5 and loc["black_select"] == 0.5
            assert 0 < loc["true_mean_fake"] < 1 and loc["collapsed"] is False
        assert r["localization"]["val"]["select"] != r["localization"]["test"]["select"]
    assert summary["rows"][0]["localization"]["val"]["select"] != \
        summary["rows"][1]["localization"]["val"]["select"]  # the recipes differ
    md = (out / "gan_recipes.md").read_text()
    best = gan_recipes.ranked(summary["rows"])[0]["recipe"]
    assert f"| 1 | {best} |" in md and "*all-black map*" in md

    # ranking: validation figures decide, test figures never do
    s = copy.deepcopy(summary)
    for r, (v, t) in zip(s["rows"], ((0.9, 0.1), (0.2, 0.95)), strict=True):
        r["localization"]["val"]["select"], r["localization"]["test"]["select"] = v, t
    assert [r["recipe"] for r in gan_recipes.ranked(s["rows"])] == ["paper", "mine"]
    assert "| 1 | paper |" in gan_recipes.markdown(s)
    s["rows"][1]["localization"]["val"]["select"] = math.nan
    s["rows"][0]["localization"]["val"]["select"] = 0.1
    assert [r["recipe"] for r in gan_recipes.ranked(s["rows"])] == ["paper", "mine"]

    # a malformed or repeated recipe: one line, exit 2
    capsys.readouterr()
    assert gan_recipes.main([*argv[:4], "--recipe", "bad name:loss.tau=1"]) == 2
    assert "gan_recipes: error: --recipe 'bad name:" in capsys.readouterr().err
    assert gan_recipes.main([*argv[:4], "--recipes", "paper", "--recipe", "paper:"]) == 2
    assert "recipe names repeat" in capsys.readouterr().err
