"""``python bench/realism_graded.py compare --generator G``: the MRI-reading predictors are
trained and scored twice in one run, on the true 1-SSIM maps and on the generator's maps (real
faces of the shared media, graded self-blends; tiny sizes, one epoch, one seed)."""

from __future__ import annotations

import json
import math

import numpy as np
import torch
from _gan_setup import write_tiny_generator
from _media import bench_module

from datasets_builders.synthetic import demo_faces
from detectors.realism.graded import graded_clips
from mrigan.inference import MRIGenerator

compare_inputs = bench_module("realism_graded")


def test_generator_maps_are_the_generators_predictions(tmp_path, one_torch_thread):
    gen_path = write_tiny_generator(tmp_path / "g.safetensors", size=32)
    faces = demo_faces(48)
    train = graded_clips({"a": faces[:4]}, (0.0, 1.0), frames_per_clip=2, seed=0)
    test = graded_clips({"b": faces[4:]}, (0.0, 1.0), frames_per_clip=2, seed=1)
    sets = compare_inputs.map_sets(train, test, str(gen_path), 48)
    assert set(sets) == {"true", "generator"} and sets["true"] == (train, test)
    gen = MRIGenerator.load(gen_path, device="cpu")
    for clips, gen_clips in zip(sets["true"], sets["generator"], strict=True):
        assert len(gen_clips) == len(clips)
        for c, g in zip(clips, gen_clips, strict=True):
            assert g.faces == c.faces and g.record == c.record
            x = torch.from_numpy(np.stack(c.faces)).permute(0, 3, 1, 2).float() / 255.0
            want = np.rint(gen.predict_tensor(x).permute(0, 2, 3, 1).numpy() * 255)
            got = np.stack(g.mris).astype(np.float64)
            assert np.abs(got - want).max() <= 1  # uint8 rounding
            assert not np.array_equal(np.stack(g.mris), np.stack(c.mris))  # not the true maps
    # the map-agreement figures: a generator's maps vs the truth, beside the all-black map
    agree = compare_inputs.map_agreement(test, sets["generator"][1])
    assert agree["all"]["frames"] == 4 and agree["crude"]["frames"] == agree["subtle"]["frames"] == 2
    same = compare_inputs.map_agreement(test, test)
    assert same["all"]["mean_ssim"] > 0.999 > agree["all"]["mean_ssim"]


def test_compare_inputs_reports_true_and_generator_rows(tmp_path, shared_data, capsys,
                                                       two_torch_threads):
    gen_path = write_tiny_generator(tmp_path / "g.safetensors", size=32)
    out = tmp_path / "cmp"
    argv = ["compare", "--shared-data", str(shared_data), "--out", str(out), "--seeds", "0",
            "--epochs", "1", "--size", "32", "--levels", "3", "--frames", "5",
            "--max-frames", "5", "--test-draws", "2", "--threads", "2", "--generator", str(gen_path)]
    assert compare_inputs.main(argv) == 0
    printed = capsys.readouterr().out
    s = json.loads((out / "compare_inputs.json").read_text())
    n_test = len(compare_inputs.TEST_PEOPLE) * 3 * 2  # people x levels x 2 clips per level
    assert s["test_clips"] == n_test and s["maps"]["generator"] == str(gen_path)
    keys = {(m["predictor"], m["maps"]) for m in s["mean"]}
    mri_readers = ("mri", "fused_late", "fused_early", "ens_.75p_.25m")
    assert keys == {("plain", "-"), ("baseline_plain", "-")} | {
        (p, maps) for p in mri_readers for maps in ("true", "generator")}
    for row in s["rows"]:
        assert row["n"] == n_test and row["seed"] == 0
        for k in ("plcc", "srcc", "rmse", "score"):
            assert math.isfinite(row[k]), row
    assert len(s["rows"]) == len(keys)  # one seed: one row per (predictor, maps)
    agree = s["generator_vs_true_on_test"]
    assert agree["all"]["frames"] == n_test * 5 and math.isfinite(agree["all"]["mean_ssim"])
    for p in mri_readers:  # side by side in the printed table
        assert f"{p:<14} true" in printed and f"{p:<14} generator" in printed
