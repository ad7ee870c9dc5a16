"""``bench/gan_curve.py`` on a real (tiny) MRI-GAN run: the PNG is written, and the table holds
every evaluation of the run's eval_history.json with the baselines' figures beside it and the
chosen step marked where the validation ``select`` is highest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _gan_setup import tiny_config
from _media import bench_module

from datasets_builders.synthetic import write_synthetic_mri_df
from mrigan.train import train_gan

gan_curve = bench_module("gan_curve")


def test_learning_curve_of_a_real_run(tmp_path, capsys, one_torch_thread):
    data = write_synthetic_mri_df(tmp_path / "mri_df", n_faces=8, size=32, val_fraction=0.5)
    cfg = tiny_config(data, tmp_path / "runs", "g", max_steps=6, eval_every=2,
                      checkpoint_every=2, select_by="select")
    train_gan(cfg)
    run = Path(cfg.run_dir)
    history = json.loads((run / "eval_history.json").read_text())
    assert [e["step"] for e in history] == [2, 4, 6]

    png = tmp_path / "curve.png"
    assert gan_curve.main([str(run), "--out", str(png)]) == 0
    out = capsys.readouterr().out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size < 200_000
    best = max(history, key=lambda e: e["select"])
    for e in history:
        mark = " (chosen)" if e is best else ""
        assert f"| {e['step']}{mark} | {e['select']:.3f} | {e['pixel_auc']:.3f} |" in out
    assert f"| *all-black* | {history[0]['black_select']:.3f} |" in out
    assert f"| *mean map* | {history[0]['mean_map_select']:.3f} |" in out
    # the training loss terms come from the run's TensorBoard events
    terms = gan_curve.training_terms(run)
    assert [s for s, _ in terms["loss/G_pixel"]] == [2, 4, 6]

    with pytest.raises(SystemExit, match="no eval_history.json"):
        gan_curve.main([str(tmp_path), "--out", str(png)])
