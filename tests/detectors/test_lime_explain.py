"""LIME maps (captum) on a real FF++ face: documented shape, seeded determinism, and - for an
MRI detector that looks at the manipulated region - weight inside the FaceForensics mask."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

pytest.importorskip("captum", reason="LIME needs the optional captum extra: pip install 'mrigan[lime]'")

from detectors.backbones import build_backbone  # noqa: E402
from detectors.config import DetectorConfig, DetectorDataConfig, DetectorInputConfig  # noqa: E402
from detectors.heads import LinearHead  # noqa: E402
from detectors.inference import Detector  # noqa: E402
from detectors.lime_explain import LimeConfig, lime_faces, superpixels  # noqa: E402
from detectors.model import FrameDetector  # noqa: E402
from mrigan.perceptual import mri_map_np, mri_to_uint8  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SIZE = 128


def _read(path, size=SIZE) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR))


def _detector(model: nn.Module, input_name: str) -> Detector:
    cfg = DetectorConfig(input=DetectorInputConfig(name=input_name), data=DetectorDataConfig(image_size=SIZE))
    return Detector(model, cfg, device="cpu")


class BrightMriScorer(nn.Module):
    """A fixed MRI detector: the brighter the MRI, the more 'fake' (logit = 400 * (mean - 0.002)).
    It looks exactly where the MRI is bright, i.e. at the manipulated region."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(400.0), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * (x.mean(dim=(1, 2, 3)) - 0.002)


def test_plain_lime_map_shape_and_seeded_determinism(ff_examples):
    torch.manual_seed(0)
    backbone, dim = build_backbone("tiny-cnn")
    det = _detector(FrameDetector(backbone, LinearHead(dim)), "plain")
    face = _read(ff_examples / "ex_deepfakes.png")
    cfg = LimeConfig(n_samples=96, batch_size=48, seed=3)
    rng_before = torch.random.get_rng_state()
    maps, probs = lime_faces(det, faces=[face], cfg=cfg)
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # global RNG untouched
    again, _ = lime_faces(det, faces=[face], cfg=cfg)
    other, _ = lime_faces(det, faces=[face], cfg=LimeConfig(n_samples=96, batch_size=48, seed=4))
    assert maps.shape == (1, SIZE, SIZE) and maps.dtype == np.float64 and probs.shape == (1,)
    np.testing.assert_array_equal(maps, again)
    assert not np.array_equal(maps, other)
    assert probs[0] == pytest.approx(det.predict_proba(faces=[face])[0], abs=1e-6)
    # one weight per superpixel: the map is constant on each SLIC region of the face
    segments = superpixels(det._batch([face])[0].permute(1, 2, 0).numpy())
    for s in np.unique(segments):
        assert np.ptp(maps[0][segments == s]) == 0.0
    assert len(np.unique(maps[0])) > 5


def test_mri_lime_puts_the_weight_inside_the_manipulation_mask(ff_examples):
    face = _read(ff_examples / "ex_deepfakes.png")
    original = _read(ff_examples / "ex_original.png")
    mri = mri_to_uint8(np.clip(mri_map_np(original, face), 0, 1))  # the true MRI of the fake
    mask = _read(ff_examples / "ex_deepfakes_mask.png").max(axis=2) > 127
    assert 0.02 < mask.mean() < 0.5
    det = _detector(BrightMriScorer(), "mri")
    maps, probs = lime_faces(det, faces=[face], mris=[mri], cfg=LimeConfig(n_samples=128))
    inside, outside = maps[0][mask].mean(), maps[0][~mask].mean()
    assert probs[0] > 0.5
    # measured: 0.174 inside, 0.006 outside (about 30x)
    assert inside > 0 and inside > 5 * max(outside, 0.0) + 1e-6, (inside, outside)
    with pytest.raises(ValueError, match="mris"):
        lime_faces(det, faces=[face])
