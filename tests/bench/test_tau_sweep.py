"""``bench/tau_sweep.py`` end to end in-process on the shared real pairs (tiny sizes, 2 taus,
2 steps): one GAN per tau on the training identities, scored on the held-out identity; a second
call skips every finished stage; a changed setting is refused naming its key."""

from __future__ import annotations

import json
import math

from _media import bench_module

from mrigan.mri_df_format import read_manifest

tau_sweep = bench_module("tau_sweep")

TINY = ["--taus", "0.3", "1.0", "--steps", "2", "--eval-every", "2", "--size", "32",
        "--width", "8", "--set", "data.every=100", "--set", "data.max_frames=1",
        "--set", "data.size=64", "--set", "data.max_side=480",
        "--set", "gan.set.data.eval_samples=4"]


def test_tau_sweep_runs_resumes_and_refuses_changed_settings(tmp_path, shared_data, capsys,
                                                             two_torch_threads):
    out = tmp_path / "sweep"
    argv = ["--pairs", str(shared_data / "pairs" / "pairs.csv"), "--out", str(out), *TINY]
    logs: list[str] = []
    assert tau_sweep.main(argv, log=logs.append) == 0
    summary = json.loads((out / "tau_sweep.json").read_text())
    assert [r["tau"] for r in summary["rows"]] == [0.3, 1.0]

    # held out: the test identity is in no training MRI-DF row, and it is what was scored
    test_ids = set(summary["splits"]["test"]["identities"])
    assert len(test_ids) == 1
    assert not test_ids & {r["identity"] for r in read_manifest(out / "mri_df" / "data")}
    for r in summary["rows"]:
        tau = r["tau"]
        gan_record = json.loads((out / f"tau_{tau}" / "gan" / "stage.json").read_text())
        assert gan_record["settings"]["gan"]["loss"]["tau"] == tau
        assert gan_record["settings"]["gan"]["train"]["max_steps"] == 2
        for which in ("chosen", "last"):
            q = r[which]
            assert set(q["identities"]) == test_ids
            assert q["fake"]["n"] == q["n_fake"] == 1 and q["real"]["n"] == 1
            for lab in ("fake", "real"):
                assert math.isfinite(q[lab]["mean_ssim"]) and -1 <= q[lab]["mean_ssim"] <= 1
            # black is exactly right on reals (their MRI is black), not on fakes
            assert q["real"]["mean_ssim_black"] > 0.99 > q["fake"]["mean_ssim_black"]
            assert 0 < q["true_mean_fake"] < 1 and 0 <= q["pred_mean_fake"] <= 1
        # 2 steps from a 0.5-grey start: far from black, so not collapsed
        assert r["chosen"]["pred_mean_fake"] > 0.2 and r["collapsed"] is False
        assert r["best_step"] == r["steps"] == 2
    # same seed, same data: only tau differs, and it changed the generator
    assert summary["rows"][0]["chosen"]["pred_mean_fake"] != \
        summary["rows"][1]["chosen"]["pred_mean_fake"]
    md = (out / "tau_sweep.md").read_text()
    assert "| 0.3 | 2 / 2 |" in md and "| 1.0 | 2 / 2 |" in md

    # rerun: every stage skipped, results unchanged
    gan_pt = out / "tau_1.0" / "gan" / "run" / "checkpoints" / "last.pt"
    mtime = gan_pt.stat().st_mtime_ns
    logs.clear()
    assert tau_sweep.main(argv, log=logs.append) == 0
    skipped = [line for line in logs if "skipped" in line]
    assert len(skipped) == 3 + 2 * 2 and not any("running" in line for line in logs)
    assert gan_pt.stat().st_mtime_ns == mtime
    again = json.loads((out / "tau_sweep.json").read_text())
    assert again["rows"] == summary["rows"]

    # changed settings with the same --out: refused, naming the key, nothing redone
    capsys.readouterr()
    assert tau_sweep.main([*argv, "--steps", "3"], log=logs.append) == 2
    err = capsys.readouterr().err
    assert "tau_0.3/gan" in err and "max_steps" in err
    assert gan_pt.stat().st_mtime_ns == mtime
