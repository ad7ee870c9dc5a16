"""MRIGenerator on each device: the same MRIs as the fp32 network on the CPU.

Each test runs on the CPU (always) and on CUDA (``cuda`` marker: skipped without a GPU; run
``pytest -m cuda`` on a GPU machine). On CUDA the default precision is bf16 autocast, so the
maps may differ from fp32 by bf16 rounding: within 0.02 (issue 14's ``out err`` bound).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _gan_setup import tiny_config

from datasets_builders.synthetic import demo_faces, write_synthetic_mri_df
from mrigan.checkpoint import load_checkpoint
from mrigan.inference import MRIGenerator, export_generator
from mrigan.models import generator_from_architecture
from mrigan.train import train_gan

DEVICES = [pytest.param("cpu", id="cpu"), pytest.param("cuda", id="cuda", marks=pytest.mark.cuda)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A briefly trained 32 px generator exported to .safetensors, and its fp32 CPU network."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        tmp = tmp_path_factory.mktemp("device_inference")
        data = write_synthetic_mri_df(tmp / "mri_df", n_faces=8, size=32)
        result = train_gan(tiny_config(data, tmp, "run", max_steps=3, eval_every=3))
        weights, _ = export_generator(result.best_checkpoint, tmp / "gen.safetensors")
        ckpt = load_checkpoint(result.best_checkpoint)
    finally:
        torch.set_num_threads(threads)
    net = generator_from_architecture(ckpt["architecture"]["generator"])
    net.load_state_dict(ckpt["generator"])
    return weights, net.eval()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_generator_on_device_matches_fp32_cpu(exported, device, precision, one_torch_thread):
    weights, reference = exported
    faces = np.stack(demo_faces(32)[:6])
    x = torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        expected = reference(x).numpy()
    gen = MRIGenerator.load(weights, device=device, precision=precision)
    assert torch.device(gen.device).type == device
    out = gen.predict(faces)  # uint8 NHWC in, float NHWC out, on the CPU
    got = np.asarray(out, dtype=np.float32)
    assert got.shape == (6, 32, 32, 3) and np.isfinite(got).all()
    err = np.abs(got.transpose(0, 3, 1, 2) - expected).max()
    tol = 1e-5 if (device == "cpu" or precision == "fp32") else 0.02
    assert err <= tol, f"{device}/{precision}: max |MRI - fp32 CPU MRI| = {err:.2e}"
