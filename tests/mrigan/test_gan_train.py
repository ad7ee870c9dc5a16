"""The GAN training loop: exact mid-epoch resume, NaN stop, best-on-held-out-SSIM, logs, CLI."""

from __future__ import annotations

import json

import pytest
import torch
from _gan_setup import Killed, kill_at, tiny_config

from datasets_builders.synthetic import write_synthetic_mri_df
from mrigan.app import cli
from mrigan.checkpoint import load_checkpoint
from mrigan.config import ConfigError, load_config
from mrigan.inference import MRIGenerator
from mrigan.mri_df_format import MriDfDataset
from mrigan.train import (
    GanConfig,
    HeldOut,
    NonFiniteLossError,
    evaluate_generator,
    lr_factor,
    replace,
    train_gan,
)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    torch.set_num_threads(1)
    # 8 identities -> 6 train (6 fakes + 6 reals: 3 batches of 4 per epoch), 2 val
    return write_synthetic_mri_df(tmp_path_factory.mktemp("mri_df"), n_faces=8, size=32)


def _states_equal(a: dict, b: dict) -> list[str]:
    """Names of tensors that differ between two (nested) state dicts."""
    diffs = []

    def walk(x, y, path):
        if isinstance(x, torch.Tensor):
            if not torch.equal(x, y):
                diffs.append(path)
        elif isinstance(x, dict):
            assert x.keys() == y.keys(), path
            for k in x:
                walk(x[k], y[k], f"{path}.{k}")
        elif isinstance(x, (list, tuple)):
            for i, (u, v) in enumerate(zip(x, y, strict=True)):
                walk(u, v, f"{path}[{i}]")
        else:
            assert x == y, path

    walk(a, b, "")
    return diffs


def test_killed_and_resumed_run_reaches_the_same_weights(tiny_data, tmp_path):
    common = {"max_steps": 10, "checkpoint_every": 4, "eval_every": 3}
    decay = {"decay_steps": 5}  # the lr schedule must survive the resume too
    full = train_gan(replace(tiny_config(tiny_data, tmp_path, "full", **common), optim=decay))

    split_cfg = replace(tiny_config(tiny_data, tmp_path, "split", **common), optim=decay)
    with pytest.raises(Killed):
        train_gan(split_cfg, callbacks=[kill_at(6)])
    ckpt = load_checkpoint(split_cfg.run_dir / "checkpoints" / "last.pt")
    assert ckpt["step"] == 4 and (ckpt["epoch"], ckpt["batch_in_epoch"]) == (1, 1)  # mid-epoch
    resumed = train_gan(split_cfg, resume=True)

    a = load_checkpoint(full.last_checkpoint)
    b = load_checkpoint(resumed.last_checkpoint)
    assert a["step"] == b["step"] == 10
    for part in ("generator", "discriminator", "opt_g", "opt_d"):
        assert _states_equal(a[part], b[part]) == [], part
    assert [h["mean_ssim"] for h in a["history"]] == [h["mean_ssim"] for h in b["history"]]
    assert (full.best_step, full.best_value) == (resumed.best_step, resumed.best_value)
    # and steps 5..10 did change the weights (the comparison is not between untouched states)
    assert _states_equal(ckpt["generator"], a["generator"])
    assert a["opt_g"]["param_groups"][0]["lr"] == pytest.approx(2e-4 * 1 / 5)  # before step 10


def test_time_budget_stops_with_a_checkpoint_that_resumes_exactly(tiny_data, tmp_path):
    common = {"max_steps": 8, "checkpoint_every": 0, "eval_every": 3}
    full = train_gan(tiny_config(tiny_data, tmp_path, "full", **common))
    cfg = tiny_config(tiny_data, tmp_path, "budget", max_minutes=1e-9, **common)
    stopped = train_gan(cfg)
    assert stopped.step == 1  # the budget is checked after each step
    assert load_checkpoint(stopped.last_checkpoint)["step"] == 1
    resumed = train_gan(replace(cfg, train={"max_minutes": 0.0}), resume=True)
    a, b = load_checkpoint(full.last_checkpoint), load_checkpoint(resumed.last_checkpoint)
    assert a["step"] == b["step"] == 8
    for part in ("generator", "discriminator", "opt_g", "opt_d"):
        assert _states_equal(a[part], b[part]) == [], part
    assert [h["step"] for h in a["history"]] == [h["step"] for h in b["history"]]


def test_discriminator_lr_factor_holds_through_the_decay(tiny_data, tmp_path):
    # optim.lr_d_factor: the discriminator steps at lr x factor, decayed alike, the generator
    # at lr; the default (1) keeps one lr for both (the paper)
    cfg = replace(tiny_config(tiny_data, tmp_path, "d_slow", max_steps=4, eval_every=0),
                  optim={"lr_d_factor": 0.25, "decay_steps": 4})
    ckpt = load_checkpoint(train_gan(cfg).last_checkpoint)
    lr_g = ckpt["opt_g"]["param_groups"][0]["lr"]
    assert lr_g == pytest.approx(2e-4 * 1 / 4)  # set before the 4th step
    assert ckpt["opt_d"]["param_groups"][0]["lr"] == pytest.approx(0.25 * lr_g)
    same = load_checkpoint(train_gan(tiny_config(tiny_data, tmp_path, "one_lr", max_steps=1,
                                                 eval_every=0)).last_checkpoint)
    assert same["opt_d"]["param_groups"][0]["lr"] == same["opt_g"]["param_groups"][0]["lr"] \
        == pytest.approx(2e-4)
    with pytest.raises(ConfigError, match="lr_d_factor"):
        replace(cfg, optim={"lr_d_factor": 0.0})


def test_linear_lr_decay_by_hand():
    assert [lr_factor(s, 10, 0) for s in (0, 9)] == [1.0, 1.0]  # constant: the paper
    assert [lr_factor(s, 10, 4) for s in range(10)] == pytest.approx(
        [1, 1, 1, 1, 1, 1, 1.0, 0.75, 0.5, 0.25])


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, tmp_path, "nan", max_steps=20, checkpoint_every=2)

    def poison_after_4(trainer, step, terms):
        if step == 4:
            with torch.no_grad():
                trainer.generator.final[2].bias.fill_(float("nan"))

    with pytest.raises(NonFiniteLossError, match=r"step 5 .*non-finite.*last\.pt"):
        train_gan(cfg, callbacks=[poison_after_4])
    last = load_checkpoint(cfg.run_dir / "checkpoints" / "last.pt")
    assert last["step"] == 4
    for part in ("generator", "discriminator"):
        assert all(torch.isfinite(v).all() for v in last[part].values())


def test_best_checkpoint_is_the_best_held_out_ssim_and_logs_are_written(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, tmp_path, "best", max_steps=8, eval_every=2, log_every=2)
    result = train_gan(cfg)
    history = json.loads((cfg.run_dir / "eval_history.json").read_text())
    assert [h["step"] for h in history] == [2, 4, 6, 8]
    best = max(history, key=lambda h: h["mean_ssim"])
    assert (result.best_step, result.best_value) == (best["step"], best["mean_ssim"])
    ckpt = load_checkpoint(result.best_checkpoint)
    assert ckpt["step"] == best["step"]

    # the saved best generator really scores that SSIM on the held-out sample
    class Wrapped:  # evaluate_generator only needs .generate()
        def __init__(self, gen):
            self.gen = gen

        def generate(self, faces):
            return self.gen.predict_tensor(faces).cpu()

    held_out = HeldOut.from_dataset(MriDfDataset(tiny_data, "val", 32), 8, seed=0)
    again = evaluate_generator(Wrapped(MRIGenerator.load(result.best_checkpoint, "cpu")), held_out)
    assert again["mean_ssim"] == pytest.approx(best["mean_ssim"], abs=1e-6)

    # resolved config beside the outputs, reloadable as the same config
    assert load_config(GanConfig, cfg.run_dir / "config.yaml") == cfg

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(cfg.run_dir / "tb"), size_guidance={"images": 0}).Reload()
    scalars = set(events.Tags()["scalars"])
    for tag in ("loss/G", "loss/G_gan", "loss/G_pixel", "loss/G_ssim", "loss/D", "loss/D_real",
                "loss/D_fake", "eval/mean_ssim", "lr/generator", "perf/images_per_s"):
        assert tag in scalars, tag
    assert [e.value for e in events.Scalars("eval/mean_ssim")] == pytest.approx(
        [h["mean_ssim"] for h in history])
    grid = events.Images("samples/face_true_generated")[-1]
    assert (grid.width, grid.height) == (3 * 32 + 4 * 2, 4 * 32 + 5 * 2)  # face|true|generated


def test_train_and_export_from_the_command_line(tiny_data, tmp_path, capsys):
    argv = ["train-gan", "--config", "configs/mri_gan_cpu.yaml", "--set", f"data.root={tiny_data}",
            "--set", f"out_dir={tmp_path}", "--set", "name=cli", "--set", "model.image_size=32",
            "--set", "model.ngf=4", "--set", "model.ndf=4", "--set", "train.batch_size=4",
            "--set", "train.max_steps=3", "--set", "train.eval_every=3",
            "--set", "data.eval_samples=4"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "trained 3 steps" in out and "best held-out (face AUC + pixel AUC) / 2" in out
    run = tmp_path / "cli"
    assert (run / "config.yaml").is_file() and (run / "checkpoints" / "best.pt").is_file()
    assert cli.main(["export-generator", str(run / "checkpoints" / "best.pt")]) == 0
    assert (run / "generator.safetensors").is_file() and (run / "generator.json").is_file()
    sidecar = json.loads((run / "generator.json").read_text())
    assert sidecar["architecture"]["image_size"] == 32 and sidecar["step"] == 3
    # resuming a finished run does no further step
    assert cli.main(argv + ["--resume"]) == 0
    assert "trained 3 steps" in capsys.readouterr().out


def test_missing_data_root_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="data.root"):
        train_gan(load_config(GanConfig, None, {"out_dir": str(tmp_path)}))


def test_auto_precision_is_recorded_and_a_resume_on_another_cpu_keeps_it(tiny_data, tmp_path,
                                                                         monkeypatch, caplog):
    """Issue 20: a run records the precision it trained in; resumed where ``auto`` would pick
    the other one (a CPU without native bf16), it says so in one line and continues in the
    recorded precision, reaching the weights of an uninterrupted run."""
    common = {"precision": "auto", "max_steps": 6, "checkpoint_every": 3, "eval_every": 3}
    monkeypatch.setenv("MRIGAN_NATIVE_BF16", "1")
    full = train_gan(tiny_config(tiny_data, tmp_path, "full", **common))
    assert full.precision == "bf16"
    split_cfg = tiny_config(tiny_data, tmp_path, "split", **common)
    with pytest.raises(Killed):
        train_gan(split_cfg, callbacks=[kill_at(4)])
    assert load_checkpoint(split_cfg.run_dir / "checkpoints" / "last.pt")["precision"] == "bf16"

    monkeypatch.setenv("MRIGAN_NATIVE_BF16", "0")  # the same run, resumed on the other CPU
    with caplog.at_level("WARNING", logger="mrigan.loop"):
        resumed = train_gan(split_cfg, resume=True)
    said = [r.getMessage() for r in caplog.records if "trained in bf16" in r.getMessage()]
    assert len(said) == 1 and "continuing in bf16 as recorded" in said[0], caplog.text
    assert resumed.precision == "bf16"
    a, b = load_checkpoint(full.last_checkpoint), load_checkpoint(resumed.last_checkpoint)
    assert a["precision"] == b["precision"] == "bf16"
    for part in ("generator", "discriminator", "opt_g", "opt_d"):
        assert _states_equal(a[part], b[part]) == [], part

    # a fresh run on this CPU trains in fp32 and records it; an explicit setting wins on resume
    fresh = train_gan(tiny_config(tiny_data, tmp_path, "fresh", **{**common, "max_steps": 3}))
    assert fresh.precision == "fp32"
    assert load_checkpoint(fresh.last_checkpoint)["precision"] == "fp32"
    explicit = tiny_config(tiny_data, tmp_path, "split",
                           **{**common, "max_steps": 7, "precision": "fp32"})
    assert train_gan(explicit, resume=True).precision == "fp32"


def test_select_by_a_localization_figure_with_its_baselines_in_the_history(tiny_data, tmp_path):
    """Issue 21: ``train.select_by: select`` picks best.pt by (face AUC + pixel AUC) / 2, a
    figure no constant map can win; every evaluation records the localization figures beside
    the all-black and mean-map baselines; a resume with another select_by is refused."""
    from mrigan.checkpoint import CheckpointError

    cfg = tiny_config(tiny_data, tmp_path, "select", max_steps=6, eval_every=2,
                      select_by="select")
    result = train_gan(cfg)
    history = json.loads((cfg.run_dir / "eval_history.json").read_text())
    for h in history:
        for k in ("fake_ssim", "pixel_auc", "face_auc", "select"):
            assert 0.0 <= h[k] <= 1.0 and f"black_{k}" in h and f"mean_map_{k}" in h
        assert h["black_face_auc"] == h["mean_map_face_auc"] == 0.5
        assert h["select"] == pytest.approx((h["face_auc"] + h["pixel_auc"]) / 2)
    best = max(history, key=lambda h: h["select"])
    assert result.select_by == "select"
    assert (result.best_step, result.best_value) == (best["step"], best["select"])
    assert load_checkpoint(result.best_checkpoint)["select_by"] == "select"
    again = tiny_config(tiny_data, tmp_path, "select", max_steps=8, eval_every=2)
    with pytest.raises(CheckpointError, match="select_by changed .*select -> mean_ssim"):
        train_gan(again, resume=True)
