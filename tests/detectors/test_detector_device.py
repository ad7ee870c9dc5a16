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

from datasets_builders.synthetic import demo_faces
from detectors.config import DetectorConfig, DetectorDataConfig, DetectorModelConfig
from detectors.inference import Detector
from detectors.model import build_detector
from mrigan.device import resolve_precision

DEVICES = [pytest.param("cpu", id="cpu"), pytest.param("cuda", id="cuda", marks=pytest.mark.cuda)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backbone", ["efficientnet-b0", "tiny-cnn"])
def test_detector_on_device_matches_fp32_cpu(device, backbone, one_torch_thread):
    torch.manual_seed(0)
    cfg = DetectorConfig(model=DetectorModelConfig(backbone=backbone, dropout=0.0),
                         data=DetectorDataConfig(image_size=64))
    model = build_detector(cfg.model).eval()
    faces = np.stack(demo_faces(64)[:8])
    reference = Detector(copy.deepcopy(model), cfg, device="cpu", precision="fp32")
    expected = reference.predict_proba(faces=faces)
    precision = resolve_precision(torch.device(device), "auto")
    det = Detector(copy.deepcopy(model), cfg, device=device, precision=precision)
    got = det.predict_proba(faces=faces)
    assert got.dtype == np.float64 and got.shape == (8,) and np.isfinite(got).all()
    assert ((got >= 0) & (got <= 1)).all()
    tol = 1e-6 if precision == "fp32" else 0.02
    assert np.abs(got - expected).max() <= tol, (device, precision, got, expected)
    # the scores are not all the same number (a collapsed network would pass the bound above)
    assert np.ptp(expected) > 0
