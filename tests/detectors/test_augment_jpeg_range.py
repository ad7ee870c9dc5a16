"""The ``jpeg`` training augmentation draws its quality only from ``train.augment_params``.

Measured on a real FaceForensics++ face: each augmented output is matched against the face
encoded and decoded by OpenCV at every quality 1-100 (the same libjpeg the augmentation uses),
which identifies the quality that produced it exactly, without looking inside the transform.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from detectors.augment import build_augmenter
from detectors.config import AugmentParams, DetectorConfig
from mrigan.config import ConfigError, load_config
from mrigan.fileio import read_image

DRAWS = 200


@pytest.fixture(scope="module")
def face(ff_examples) -> np.ndarray:
    """The manipulated face of the FF++ Deepfakes example: its mask's box, squared, 128 px."""
    frame = read_image(ff_examples / "ex_deepfakes.png")
    mask = read_image(ff_examples / "ex_deepfakes_mask.png")
    ys, xs = np.nonzero(mask.reshape(mask.shape[0], mask.shape[1], -1).max(axis=-1) > 127)
    cy, cx = (ys.min() + ys.max()) // 2, (xs.min() + xs.max()) // 2
    half = int(max(ys.max() - ys.min(), xs.max() - xs.min()) * 0.65)
    crop = frame[max(cy - half, 0):cy + half, max(cx - half, 0):cx + half]
    return cv2.resize(crop, (128, 128), interpolation=cv2.INTER_AREA)


def _qualities_of(face: np.ndarray, params: AugmentParams) -> list[set[int] | None]:
    """Per seeded draw: the qualities whose encoding reproduces the output (None: untouched)."""
    table = {}
    for q in range(1, 101):
        ok, buf = cv2.imencode(".jpg", face, (int(cv2.IMWRITE_JPEG_QUALITY), q))
        assert ok
        table[q] = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    aug = build_augmenter(["jpeg"], face.shape[0], params=params)
    found: list[set[int] | None] = []
    for i in range(DRAWS):
        out = aug(face, (0, 0, i))
        if np.array_equal(out, face):
            found.append(None)
            continue
        qs = {q for q, dec in table.items() if np.array_equal(out, dec)}
        assert qs, f"draw {i}: output matches no JPEG quality 1-100"
        found.append(qs)
    return found


def test_study_preset_draws_qualities_10_to_50_on_every_image(face):
    params = load_config(DetectorConfig, "configs/detector_xception_jpeg_study.yaml"
                         ).train.augment_params
    assert params == AugmentParams(jpeg_quality=(10, 50), jpeg_p=1.0)
    found = _qualities_of(face, params)
    assert all(qs is not None for qs in found)  # p = 1: every image compressed
    drawn = set().union(*found)
    assert all(10 <= q <= 50 for qs in found for q in qs), sorted(drawn)
    # the whole range is used, not one fixed quality (41 values, 200 draws)
    assert min(drawn) <= 13 and max(drawn) >= 47 and len(drawn) >= 30


def test_default_is_quality_60_to_100_on_about_30_percent(face):
    found = _qualities_of(face, AugmentParams())
    compressed = [qs for qs in found if qs is not None]
    assert 0.2 <= len(compressed) / DRAWS <= 0.4
    assert all(60 <= q <= 100 for qs in compressed for q in qs)
    # a seeded run repeats itself draw for draw
    assert _qualities_of(face, AugmentParams()) == found


@pytest.mark.parametrize("override", ["train.augment_params.jpeg_quality=[50,10]",
                                      "train.augment_params.jpeg_quality=[0,50]",
                                      "train.augment_params.jpeg_quality=[10,101]",
                                      "train.augment_params.jpeg_p=1.5"])
def test_bad_jpeg_params_are_refused_by_the_config(override):
    with pytest.raises(ConfigError, match="train.augment_params.jpeg_"):
        load_config(DetectorConfig, "configs/detector_plain.yaml", [override])
