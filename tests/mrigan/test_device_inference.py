"""MRIGenerator on each device: the same MRIs as the fp32 network on the CPU.

Each test runs on the CPU (always) and on CUDA (``cuda`` marker: skipped without a GPU; run
``pytest -m cuda`` on a GPU machine). On CUDA the default precision is bf16 autocast, so the
maps may differ from fp32 by bf16 rounding: within 0.02 (issue 14's ``out err`` bound).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _gan_setup import write_tiny_generator
from safetensors import safe_open
from safetensors.torch import load_file

from datasets_builders.synthetic import demo_faces
from mrigan.inference import MRIGenerator
from mrigan.models import generator_from_architecture

DEVICES = [pytest.param("cpu", id="cpu"), pytest.param("cuda", id="cuda", marks=pytest.mark.cuda)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A small 32 px generator in the exported format, and its fp32 network built directly
    from the file's tensors and architecture (not through MRIGenerator)."""
    weights = write_tiny_generator(tmp_path_factory.mktemp("device_inference") / "gen.safetensors",
                                   size=32)
    arch = json.loads(safe_open(str(weights), "pt").metadata()["mrigan"])["architecture"]
    net = generator_from_architecture(arch)
    net.load_state_dict(load_file(str(weights)))
    return weights, net.eval()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_generator_on_device_matches_fp32_cpu(exported, device, precision, bf16_capability,
                                              one_torch_thread):
    """``auto`` on a CPU is fp32 whether or not the CPU has native bf16 (issue 20)."""
    weights, reference = exported
    faces = np.stack(demo_faces(32)[:6])
    x = torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        expected = reference(x).numpy()
    gen = MRIGenerator.load(weights, device=device, precision=precision)
    assert torch.device(gen.device).type == device
    if device == "cpu":
        assert gen.precision == "fp32"  # resolved when loaded, as analyses record it
    out = gen.predict(faces)  # uint8 NHWC in, float NHWC out, on the CPU
    got = np.asarray(out, dtype=np.float32)
    assert got.shape == (6, 32, 32, 3) and np.isfinite(got).all()
    err = np.abs(got.transpose(0, 3, 1, 2) - expected).max()
    tol = 1e-5 if (device == "cpu" or precision == "fp32") else 0.02
    assert err <= tol, f"{device}/{precision}: max |MRI - fp32 CPU MRI| = {err:.2e}"
