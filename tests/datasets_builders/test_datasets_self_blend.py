"""Self-blended fakes of every real training face (issue 21 goal 1), in the MRI-DF builder on
the real FF++ sample: exact (real, fake, MRI) triples, masks that cover the face, only the
configured splits, seeded, and the SBI variety of shapes and jitters."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from datasets_builders.faces import FaceDetector
from datasets_builders.mri_df import (
    BuildConfig,
    BuildSelfBlendConfig,
    BuildSourceConfig,
    BuildSplitConfig,
    FaceDetectionConfig,
    build_mri_df,
)
from datasets_builders.synthetic import MASK_SHAPES, SBI_BLEND_RATIOS, sbi_params, self_blend
from mrigan.config import ConfigError
from mrigan.fileio import read_image
from mrigan.mri_df_format import read_manifest

FAST_FACES = FaceDetectionConfig(device="cpu", max_side=320, batch_size=6, size=64)


@pytest.fixture(scope="module")
def built(ffpp_root, tmp_path_factory):
    torch.set_num_threads(2)
    f = FAST_FACES
    detector = FaceDetector(device=f.device, thresholds=f.thresholds,
                            min_face_size=f.min_face_size, max_side=f.max_side,
                            batch_size=f.batch_size)
    out = tmp_path_factory.mktemp("mri_df_sbi")
    cfg = BuildConfig(out=str(out), sources=(BuildSourceConfig(kind="ffpp", root=str(ffpp_root)),),
                      every=60, max_frames=3, faces=FAST_FACES, progress=False,
                      split=BuildSplitConfig(val=0.34, test=0.0),
                      self_blend=BuildSelfBlendConfig(per_real=2, splits=("train",)))
    summary = build_mri_df(cfg, log=lambda *_: None, detector=detector)
    return out, read_manifest(out), summary


def test_every_real_training_face_gets_its_self_blends_and_nothing_else_does(built):
    _, rows, _ = built
    reals = [r for r in rows if r["label"] == "real"]
    blends = [r for r in rows if r["method"] == "self_blend"]
    train_reals = [r for r in reals if r["split"] == "train"]
    assert train_reals and any(r["split"] == "val" for r in reals)
    assert len(blends) == 2 * len(train_reals)
    assert {r["split"] for r in blends} == {"train"}  # validation faces keep real fakes alone
    summary = built[2]
    assert summary.self_blend_rows == len(blends)
    assert f"of the fakes {len(blends)} self-blends and " in "\n".join(summary.lines())
    per_face = Counter((r["original"], r["frame"], r["track"]) for r in blends)
    assert set(per_face.values()) == {2}
    for b in blends:  # same person, same split, pointing at its real video
        assert b["label"] == "fake" and b["video"].startswith(b["original"] + "~sbi")
        real = next(r for r in train_reals if r["video"] == b["original"])
        assert b["identity"] == real["identity"]
    # the real manipulations are still there with their own methods
    assert {r["method"] for r in rows if r["label"] == "fake"} >= {"Deepfakes", "self_blend"}


def test_self_blend_rows_are_exact_real_fake_mri_triples(built):
    out, rows, _ = built
    blends = [r for r in rows if r["method"] == "self_blend"][:4]
    real_of = {(r["video"], r["frame"], r["track"]): r for r in rows if r["label"] == "real"}
    for b in blends:
        real = read_image(out / real_of[(b["original"], b["frame"], b["track"])]["image"])
        fake = read_image(out / b["image"])
        mri = read_image(out / b["mri"]).astype(np.float64) / 255
        assert real.shape == fake.shape and not np.array_equal(real, fake)
        ref = np.stack([structural_similarity(real[..., c].astype(np.float64),
                                              fake[..., c].astype(np.float64),
                                              gaussian_weights=True, sigma=1.5,
                                              use_sample_covariance=False, data_range=255,
                                              full=True)[1] for c in range(3)], -1)
        assert np.abs(mri - np.clip(1 - ref, 0, 1)).max() <= 0.5 / 255 + 1e-6


def test_blends_are_seeded_and_the_config_checked(built, ffpp_root, tmp_path):
    _, rows, _ = built
    face = read_image(Path(built[0]) / next(r for r in rows if r["label"] == "real")["image"])
    a = self_blend(face, np.random.default_rng(5), sbi_params(np.random.default_rng(5)))
    b = self_blend(face, np.random.default_rng(5), sbi_params(np.random.default_rng(5)))
    assert np.array_equal(a.fake, b.fake)
    # builds made before self-blends existed keep resuming: off, the settings are not in the
    # fingerprint; on, they are (another per_real or split list is another build)
    from datasets_builders.build_records import fingerprint

    assert not [k for k in fingerprint(BuildConfig()) if k.startswith("self_blend")]
    fp = fingerprint(BuildConfig(self_blend=BuildSelfBlendConfig(per_real=2)))
    assert fp["self_blend.per_real"] == 2 and fp["self_blend.splits"] == ["train"]
    with pytest.raises(ConfigError, match="self_blend.splits"):
        BuildSelfBlendConfig(splits=("holdout",))
    with pytest.raises(ConfigError, match="per_real"):
        BuildSelfBlendConfig(per_real=-1)


def test_sbi_variety_covers_the_face_with_every_shape(ff_examples):
    """Each mask shape covers a real part of the face crop (not the corners), the blend ratios
    are SBI's, and the jitters change the copy."""
    img = read_image(ff_examples / "ex_original.png")
    face = np.ascontiguousarray(img[110:366, 200:456])  # the face of the example frame
    rng = np.random.default_rng(0)
    draws = [sbi_params(rng) for _ in range(200)]
    assert {p.mask_shape for p in draws} == set(MASK_SHAPES)
    assert {p.alpha for p in draws} == set(SBI_BLEND_RATIOS)
    assert any(p.downscale < 1 for p in draws) and any(p.sharpen > 0 for p in draws)
    for shape in MASK_SHAPES:
        p = next(d for d in draws if d.mask_shape == shape)
        blend = self_blend(face, np.random.default_rng(1), p)
        mask = blend.mask / max(p.alpha, 1e-6)
        h, w = mask.shape
        centre = mask[h // 3: 2 * h // 3 + 8, w // 3: 2 * w // 3].mean()
        corners = np.mean([mask[:h // 8, :w // 8].mean(), mask[:h // 8, -w // 8:].mean()])
        assert 0.05 < mask.mean() < 0.75, shape  # a part of the crop, not all or nothing
        assert centre > 0.3 and corners < 0.05, shape  # on the face, not in the corners
        changed = np.abs(blend.fake.astype(int) - face.astype(int)).max(-1) > 2
        assert changed[mask > 0.5].mean() > 0.3 and changed[mask < 0.01].mean() == 0, shape
