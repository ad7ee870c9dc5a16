"""Trainer behaviour on a small synthetic MRI-DF (self-blended fakes of demo faces): exact
resume, balance modes, temporal head, MRI inputs (cache vs on the fly), the loaded detector."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _detector_setup import tiny_detector_config, write_detector_mri_df
from _gan_setup import write_tiny_generator
from _torchrun import torchrun_cli

from detectors.config import (
    DetectorConfig,
    DetectorInputConfig,
    DetectorModelConfig,
)
from detectors.data import load_rows
from detectors.inference import load_detector
from detectors.inputs import (
    GeneratorMriInput,
    InputError,
    build_input,
    load_generator,
    precompute_mris,
)
from detectors.train import make_dataset, train_detector
from mrigan.app.cli import main
from mrigan.checkpoint import load_checkpoint
from mrigan.fileio import read_image

pytestmark = pytest.mark.usefixtures("one_torch_thread")
QUIET = {"log": lambda *a, **k: None}




@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    return write_detector_mri_df(tmp_path_factory.mktemp("syn"))


_cfg = tiny_detector_config


def test_resume_mid_epoch_gives_the_same_weights(synthetic_root, tmp_path):
    """Stopping at step 3 (mid-epoch) and resuming to step 7 ends where a straight run to 7
    ends: same batches, same augmentations, same dropout draws."""
    straight = train_detector(_cfg(synthetic_root, tmp_path, "straight", max_steps=7), **QUIET)
    train_detector(_cfg(synthetic_root, tmp_path, "resumed", max_steps=3), **QUIET)
    mid = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")
    assert (mid["step"], mid["epoch"]) == (3, 0) and mid["batches_done"] == 3
    resumed = train_detector(_cfg(synthetic_root, tmp_path, "resumed", max_steps=7), **QUIET)
    assert straight.step == resumed.step == 7
    a = load_checkpoint(straight.last_checkpoint)["model"]
    b = load_checkpoint(resumed.last_checkpoint)["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    # and steps 4..7 really trained (weights moved after the stop)
    assert any(not torch.equal(mid["model"][k], a[k]) for k in a if a[k].is_floating_point())


@pytest.mark.parametrize("overrides", [
    {"balance": "paired", "loss": "focal"},
    {"balance": "sample"},
])
def test_balance_modes_and_focal_loss_train(synthetic_root, tmp_path, overrides):
    result = train_detector(_cfg(synthetic_root, tmp_path, "bal", max_steps=4, **overrides),
                            **QUIET)
    assert result.step == 4
    assert np.isfinite(result.history[-1]["auc"])


def test_temporal_detector_trains_on_clips(synthetic_root, tmp_path):
    cfg = _cfg(synthetic_root, tmp_path, "lstm", max_steps=3)
    cfg = DetectorConfig(**{**cfg.__dict__, "model": DetectorModelConfig(
        backbone="tiny-cnn", temporal=True, clip_length=2, lstm_hidden=8)})
    result = train_detector(cfg, **QUIET)
    assert result.step == 3
    det = load_detector(result.last_checkpoint, device="cpu")
    faces = [read_image(synthetic_root / r["image"]) for r in load_rows(synthetic_root)[:3]]
    p = det.predict_proba(faces=faces)
    assert p.shape == (3,) and ((p > 0) & (p < 1)).all()


def test_mri_inputs_cache_and_on_the_fly_agree(synthetic_root, tmp_path):
    gen_file = write_tiny_generator(tmp_path / "g.safetensors", size=32)
    rows = load_rows(synthetic_root)[:6]
    cfg = DetectorInputConfig(name="mri", generator=str(gen_file), mri_cache=str(tmp_path / "cache"))
    cached = build_input(cfg, synthetic_root, rows=rows, **QUIET)
    live = build_input(DetectorInputConfig(name="mri", generator=str(gen_file)), synthetic_root)
    assert isinstance(live, GeneratorMriInput)
    base = _cfg(synthetic_root, tmp_path, "x")
    from_cache = make_dataset(rows, cached, base)
    from_faces = make_dataset(rows, live, base)
    a = torch.stack([from_cache[i]["image"] for i in range(len(rows))])
    b = live(torch.stack([from_faces[i]["image"] for i in range(len(rows))]))
    # same generator, same faces; the cache stores uint8 at 48 px, read back resized to 32 px
    assert (a - b).abs().mean() < 0.02
    assert b.min() >= 0 and b.max() <= 1
    # a cache filled by another generator is refused
    other = write_tiny_generator(tmp_path / "other.safetensors", size=32, seed=1)
    with pytest.raises(InputError, match="made by generator"):
        precompute_mris(load_generator(other, "cpu"), synthetic_root, rows, tmp_path / "cache",
                        generator_file=other)
    with pytest.raises(InputError, match="needs input.generator"):
        build_input(DetectorInputConfig(name="mri"), synthetic_root)


def test_loaded_detector_scores_like_the_evaluation_path(synthetic_root, tmp_path):
    from detectors.inputs import InputAdapter
    from detectors.predict import predict_probs

    result = train_detector(_cfg(synthetic_root, tmp_path, "det", max_steps=2), **QUIET)
    det = load_detector(result.last_checkpoint, device="cpu")
    rows = load_rows(synthetic_root)
    ds = make_dataset(rows, InputAdapter(synthetic_root), det.config)
    expected = predict_probs(det.model, InputAdapter(synthetic_root), ds, device="cpu")
    faces = [read_image(synthetic_root / r["image"]) for r in rows]
    got = det.predict_proba(faces=faces, mris=None)
    # predict_proba resizes with antialiased bilinear, the dataset with OpenCV area: close
    assert np.corrcoef(got, expected)[0, 1] > 0.99
    with pytest.raises(ValueError, match="pass faces="):
        det.predict_proba(mris=faces)


def test_explain_faces_on_a_loaded_detector(synthetic_root, tmp_path):
    from detectors.explain import explain_faces, overlay

    result = train_detector(_cfg(synthetic_root, tmp_path, "cam", max_steps=2), **QUIET)
    det = load_detector(result.last_checkpoint, device="cpu")
    faces = [read_image(synthetic_root / r["image"]) for r in load_rows(synthetic_root)[:4]]
    heat, probs = explain_faces(det, faces=faces)
    assert heat.shape == (4, 32, 32) and heat.min() >= 0 and heat.max() <= 1
    np.testing.assert_allclose(probs, det.predict_proba(faces=faces), rtol=1e-5, atol=1e-6)
    assert overlay(faces[0], heat[0]).shape == faces[0].shape


def test_torchrun_two_processes_cpu(synthetic_root, tmp_path):
    """DDP on CPU (gloo): two ranks share each global batch, rank 0 writes, nothing hangs."""
    config = tmp_path / "ddp.yaml"
    config.write_text(
        f"name: ddp\nout_dir: {tmp_path}\nmodel: {{backbone: tiny-cnn}}\n"
        f"data: {{root: {synthetic_root}, image_size: 32, workers: 0}}\n"
        "train: {epochs: 1, batch_size: 8, device: cpu, precision: fp32, augment: [flip]}\n")
    stdout = torchrun_cli(["train-detector", "--config", str(config)], cwd=tmp_path)
    assert stdout.count("best validation AUC") == 1  # printed by rank 0 only
    state = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.pt")
    n_train = sum(r["split"] == "train" for r in load_rows(synthetic_root))
    assert state["step"] == -(-n_train // 8)  # global batches: independent of the rank count
    assert np.isfinite(state["history"][-1]["auc"])


def test_gradual_unfreezing_under_torchrun(synthetic_root, tmp_path):
    """Freezing under DDP: the trainable set grows each epoch (the DDP wrapper is rebuilt then);
    groups frozen throughout keep rank 0's initial weights and BatchNorm statistics bit for bit,
    and the groups that were unfrozen did train. The initial weights come from a one-process
    run whose backbone never trained (same seed: rank 0 builds the same model)."""
    def write_config(name: str, epochs: int):
        path = tmp_path / f"{name}.yaml"
        path.write_text(
            f"name: {name}\nout_dir: {tmp_path}\nmodel: {{backbone: tiny-cnn}}\n"
            f"data: {{root: {synthetic_root}, image_size: 32, workers: 0}}\n"
            f"train: {{epochs: {epochs}, batch_size: 8, device: cpu, precision: fp32, "
            "freeze: {backbone_until_epoch: 1, unfreeze: gradual, groups: 4}}\n")
        return path

    assert main(["train-detector", "--config", str(write_config("head_only", 1))]) == 0
    init = load_checkpoint(tmp_path / "head_only" / "checkpoints" / "last.pt")["model"]
    config = write_config("ddp_freeze", 3)
    stdout = torchrun_cli(["train-detector", "--config", str(config)], cwd=tmp_path)
    assert "epoch 1: backbone groups trainable 1/4" in stdout
    assert "epoch 2: backbone groups trainable 2/4" in stdout
    final = load_checkpoint(tmp_path / "ddp_freeze" / "checkpoints" / "last.pt")["model"]
    # tiny-cnn: backbone.body.{0,3,6,9} conv, {1,4,7,10} BatchNorm; groups 0-1 frozen throughout
    frozen = [k for k in init if k.startswith(("backbone.body.0.", "backbone.body.1.",
                                               "backbone.body.3.", "backbone.body.4."))]
    trained = [k for k in init if k.startswith(("backbone.body.6.", "backbone.body.9."))]
    assert frozen and trained
    for k in frozen:
        assert torch.equal(final[k], init[k]), k
    assert all(not torch.equal(final[k], init[k]) for k in trained)


def test_inputs_are_chosen_by_name_from_a_registry(tmp_path):
    from detectors.inputs import INPUTS

    assert INPUTS.names() == ["mri", "plain"]
    with pytest.raises(InputError, match="unknown detector input 'edges'; known: mri, plain"):
        build_input(DetectorInputConfig(name="edges"), tmp_path)
    with pytest.raises(InputError, match="needs input.generator"):
        build_input(DetectorInputConfig(name="mri"), tmp_path)


def test_corrupt_checkpoint_or_other_head_on_resume_is_one_cli_error(synthetic_root, tmp_path,
                                                                     capsys):
    """Through ``mrigan train-detector``: a truncated ``last.pt`` names the file and offers
    ``best.pt``; another head names the differing weight keys; exit 2, one line each."""
    from mrigan.app.cli import main

    argv = ["train-detector", "--config", "configs/detector_plain_cpu.yaml",
            "--data", str(synthetic_root), "--name", "cli", "--out-dir", str(tmp_path),
            "--set", "model.backbone=tiny-cnn", "--set", "data.image_size=32",
            "--set", "data.workers=0", "--set", "train.batch_size=6", "--set", "train.epochs=1",
            "--set", "train.max_steps=2", "--set", "train.device=cpu"]
    assert main(argv) == 0
    ckpts = tmp_path / "cli" / "checkpoints"
    last = ckpts / "last.pt"
    good = last.read_bytes()
    capsys.readouterr()
    last.write_bytes(good[: len(good) // 3])
    assert main(argv + ["--set", "train.max_steps=3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(last) in err[0] and str(ckpts / "best.pt") in err[0], err
    last.write_bytes(good)
    assert main(argv + ["--set", "train.max_steps=3", "--set", "model.head=linear"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(last) in err[0] and "architecture changed" in err[0], err
    assert "head." in err[0], err  # names the differing keys
