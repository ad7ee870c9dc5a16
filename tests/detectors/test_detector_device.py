"""The frame detector on each device: P(fake) like the fp32 CPU model's, returned in fp32+.

Runs on the CPU always and on CUDA with the ``cuda`` marker (skipped without a GPU). On CUDA
the default precision is bf16 autocast for the backbone; the head and sigmoid run in fp32
(``detectors.heads``), so probabilities stay within 0.02 of fp32 and are float64 arrays.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from _detector_setup import tiny_detector_config, write_detector_mri_df

from datasets_builders.synthetic import demo_faces
from detectors.config import DetectorConfig, DetectorDataConfig, DetectorModelConfig
from detectors.inference import Detector
from detectors.model import build_detector
from detectors.predict import CHANNELS_LAST_ON_CUDA, resolve_channels_last
from detectors.train import train_detector
from mrigan.checkpoint import load_checkpoint
from mrigan.config import ConfigError, load_config
from mrigan.device import resolve_precision

DEVICES = [pytest.param("cpu", id="cpu"), pytest.param("cuda", id="cuda", marks=pytest.mark.cuda)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backbone", ["efficientnet-b0", "tiny-cnn"])
def test_detector_on_device_matches_fp32_cpu(device, backbone, bf16_capability,
                                             one_torch_thread):
    torch.manual_seed(0)
    cfg = DetectorConfig(model=DetectorModelConfig(backbone=backbone, dropout=0.0),
                         data=DetectorDataConfig(image_size=64))
    model = build_detector(cfg.model).eval()
    faces = np.stack(demo_faces(64)[:8])
    reference = Detector(copy.deepcopy(model), cfg, device="cpu", precision="fp32")
    expected = reference.predict_proba(faces=faces)
    precision = resolve_precision(torch.device(device), "auto")
    det = Detector(copy.deepcopy(model), cfg, device=device, precision="auto")
    assert det.precision == precision  # auto, resolved for inference: fp32 on every CPU
    if device == "cpu":
        assert precision == "fp32"
    got = det.predict_proba(faces=faces)
    assert got.dtype == np.float64 and got.shape == (8,) and np.isfinite(got).all()
    assert ((got >= 0) & (got <= 1)).all()
    tol = 1e-6 if precision == "fp32" else 0.02
    assert np.abs(got - expected).max() <= tol, (device, precision, got, expected)
    # the scores are not all the same number (a collapsed network would pass the bound above)
    assert np.ptp(expected) > 0


# --- channels_last (issue 14 goal 6: auto is what bench/detect.py measures faster) -----------


def test_channels_last_auto_is_on_for_cuda_only_and_a_bad_value_is_a_config_error():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_channels_last(cpu, "auto") is False
    assert resolve_channels_last(cuda, "auto") is CHANNELS_LAST_ON_CUDA
    assert resolve_channels_last(cuda, None) is CHANNELS_LAST_ON_CUDA  # forward_batch's default
    assert resolve_channels_last(cpu, True) is True and resolve_channels_last(cuda, "off") is False
    with pytest.raises(ConfigError, match="train.channels_last"):
        resolve_channels_last(cpu, "sometimes")
    with pytest.raises(ConfigError, match="channels_last"):
        load_config(DetectorConfig, "configs/detector_plain.yaml", ["train.channels_last=2"])
    assert load_config(DetectorConfig, "configs/detector_plain.yaml").train.channels_last == "auto"


@pytest.mark.parametrize("device", DEVICES)
def test_channels_last_detector_scores_like_the_contiguous_one(device, one_torch_thread):
    torch.manual_seed(0)
    cfg = DetectorConfig(model=DetectorModelConfig(backbone="efficientnet-b0", dropout=0.0),
                         data=DetectorDataConfig(image_size=64))
    model = build_detector(cfg.model).eval()
    faces = np.stack(demo_faces(64)[:8])
    dense = Detector(copy.deepcopy(model), cfg, device=device, precision="fp32",
                     channels_last=False)
    cl = Detector(copy.deepcopy(model), cfg, device=device, precision="fp32", channels_last=True)
    assert not dense.channels_last and cl.channels_last
    conv = next(m.weight for m in cl.model.modules() if getattr(m, "weight", None) is not None
                and m.weight.ndim == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last)
    expected = dense.predict_proba(faces=faces)
    assert np.ptp(expected) > 0
    np.testing.assert_allclose(cl.predict_proba(faces=faces), expected, atol=1e-5)


def test_detector_training_in_channels_last_follows_the_contiguous_run(tmp_path,
                                                                        one_torch_thread):
    """3 Adam steps at lr 1e-3 move a weight by up to 3e-3; the two layouts' weights agree to
    1e-4 (Adam divides by the gradients' scale, so float rounding of near-zero gradients is
    amplified: 1.8e-5 measured on CPU)."""
    root = write_detector_mri_df(tmp_path / "df")
    runs = {}
    for layout in (False, True):
        cfg = tiny_detector_config(root, tmp_path / "runs", f"cl_{layout}", epochs=1,
                                   max_steps=3, channels_last=layout)
        runs[layout] = load_checkpoint(train_detector(cfg, log=lambda *a: None).last_checkpoint)["model"]
    first_conv = "backbone.body.0.weight"  # (16, 3, 3, 3): the layouts differ in memory
    assert runs[True][first_conv].is_contiguous(memory_format=torch.channels_last)
    assert not runs[False][first_conv].is_contiguous(memory_format=torch.channels_last)
    for k, v in runs[False].items():
        assert torch.allclose(v.float(), runs[True][k].float(), rtol=0, atol=1e-4), k
