"""The pooled regressor, test-time averaging, the frozen-feature baseline and ensembles."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from datasets_builders.synthetic import demo_faces
from detectors.realism.baseline import FrozenFeatureBaseline
from detectors.realism.clips import Clip
from detectors.realism.config import RealismBaselineConfig
from detectors.realism.ensemble import fit_weights, weighted_average
from detectors.realism.labels import MosRecord
from detectors.realism.model import RealismModelConfig, RealismRegressor, temporal_pool
from detectors.realism.predict import clip_outputs
from detectors.realism.sampler import SequenceSampler


def test_temporal_pool_is_mean_and_population_std():
    x = torch.randn(3, 5, 7, dtype=torch.float64)
    pooled = temporal_pool(x).numpy()
    np.testing.assert_allclose(pooled[:, :7], x.numpy().mean(axis=1))
    np.testing.assert_allclose(pooled[:, 7:], x.numpy().std(axis=1))  # numpy's default ddof=0


@pytest.mark.parametrize("inputs,fusion,streams", [("plain", "late", ["plain"]), ("mri", "late", ["mri"]),
                                                   ("fused", "late", ["plain", "mri"]),
                                                   ("fused", "early", ["early"])])
def test_regressor_shapes_and_fine_tuned_backbone(inputs, fusion, streams):
    torch.manual_seed(0)
    model = RealismRegressor(RealismModelConfig(inputs=inputs, fusion=fusion, hidden=16), mos_centre=3.2)
    assert list(model.streams) == streams
    batch = {"plain": torch.rand(2, 4, 3, 32, 32), "mri": torch.rand(2, 4, 3, 32, 32)}
    out = model(batch)
    assert out.shape == (2,)
    out.sum().backward()
    for stream in model.streams.values():  # every backbone gets a gradient: it is fine-tuned
        grads = [p.grad for p in stream.parameters() if p.requires_grad]
        assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)
    model.eval()
    # frame order does not matter (mean/std pooling); the frames' content does
    perm = batch | {k: v[:, [2, 0, 3, 1]] for k, v in batch.items()}
    torch.testing.assert_close(model(batch), model(perm), rtol=1e-5, atol=1e-5)


def test_regressor_rejects_unknown_inputs():
    with pytest.raises(ValueError, match="known: plain, mri, fused"):
        RealismRegressor(RealismModelConfig(inputs="rgb"))
    with pytest.raises(KeyError, match="unknown backbone"):
        RealismRegressor(RealismModelConfig(backbone="nope"))


def _numbered_clip(key: str, n: int) -> Clip:
    """Frame i is a flat image of value i: a 'model' reading the mean sees the frame indices."""
    faces = tuple(np.full((8, 8, 3), i, np.uint8) for i in range(n))
    return Clip(MosRecord(key, 3.0, (key,), "m", "t"), faces)


def test_clip_outputs_average_the_seeded_test_draws():
    sampler = SequenceSampler(num_frames=3, stride=2, test_draws=10)
    clips = [_numbered_clip("a", 20), _numbered_clip("b", 9), _numbered_clip("c", 2)]

    def mean_frame_index(batch):
        return batch["plain"].mean(dim=(1, 2, 3, 4)) * 255.0

    got = clip_outputs(mean_frame_index, clips, sampler, inputs="plain", size=8,
                       device=torch.device("cpu"), batch_size=7)
    want = [np.mean([idx.mean() for idx in sampler.test_sequences(len(c), c.key)]) for c in clips]
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert got[0] != pytest.approx(got[1])  # draws differ per video


def test_frozen_baseline_never_updates_the_backbone_and_fits_on_pooled_features():
    faces = demo_faces(32)
    rng = np.random.default_rng(0)
    clips = []
    for i in range(12):  # brightness stands in for quality: a linear fit must find it
        gain = 0.4 + 0.05 * i
        frames = tuple(np.clip(faces[(i + k) % 16] * gain, 0, 255).astype(np.uint8) for k in range(4))
        clips.append(Clip(MosRecord(f"v{i}", 1 + 4 * i / 11, (f"p{i}",), "m", "t"), frames))
    rng.shuffle(clips)
    base = FrozenFeatureBaseline(RealismModelConfig(hidden=8), RealismBaselineConfig("ridge", alpha=1.0, draws=2),
                                 SequenceSampler(3, 1, 2), 32, torch.device("cpu"))
    before = {k: v.clone() for k, v in base.extractor.state_dict().items()}
    base.fit(clips[:8])
    after = base.extractor.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN stats included: eval mode
    feats = base.features(clips[:8])
    assert feats.shape == (8, 2 * base.extractor.streams["plain"].feature_dim)
    from sklearn.linear_model import Ridge
    from sklearn.preprocessing import StandardScaler

    ref = Ridge(alpha=1.0).fit(StandardScaler().fit_transform(feats), [c.mos for c in clips[:8]])
    scaler = StandardScaler().fit(feats)
    np.testing.assert_allclose(base.predict(clips[8:]),
                               ref.predict(scaler.transform(base.features(clips[8:]))), rtol=1e-6)
    for name in ("svr", "linear"):
        b = FrozenFeatureBaseline(RealismModelConfig(hidden=8), RealismBaselineConfig(name, draws=1),
                                  SequenceSampler(3, 1, 1), 32, torch.device("cpu")).fit(clips[:8])
        assert b.predict(clips[8:]).shape == (4,)
    with pytest.raises(ValueError, match="unknown baseline regressor"):
        FrozenFeatureBaseline(RealismModelConfig(), RealismBaselineConfig("xgboost"), SequenceSampler(), 32,
                              torch.device("cpu"))


def test_weighted_ensembles():
    a, b = np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 5.0])
    np.testing.assert_allclose(weighted_average([a, b], [0.75, 0.25]), [1.5, 2.0, 3.5])
    np.testing.assert_allclose(weighted_average([a, b], [3, 1]), [1.5, 2.0, 3.5])  # normalised
    np.testing.assert_allclose(weighted_average([a, b]), [2.0, 2.0, 4.0])
    with pytest.raises(ValueError, match="2 ensemble weight"):
        weighted_average([a, b, a], [0.5, 0.5])
    with pytest.raises(ValueError, match=">= 0"):
        weighted_average([a, b], [1.0, -0.5])
    rng = np.random.default_rng(0)
    y = rng.uniform(1, 5, 40)
    good, noise = y + rng.normal(0, 0.1, 40), rng.uniform(1, 5, 40)
    w, score = fit_weights([noise, good], y, step=0.1)
    assert w[1] >= 0.9 and score > 0.95


def test_bf16_autocast_keeps_the_mos_head_in_fp32(ff_examples):
    """Issue 20: under bf16 autocast (training on a CPU with native bf16) a head in bf16 rounds
    a MOS near 3 to steps of 1/64, so similar clips got one constant prediction (the realism
    `plain` row's SRCC was NaN). The pooling and head run in fp32: predictions stay distinct and
    equal the fp32 head applied to the same backbone features."""
    from mrigan.fileio import read_image

    torch.manual_seed(0)
    model = RealismRegressor(RealismModelConfig(inputs="plain", backbone="tiny-cnn", hidden=16),
                             mos_centre=3.0).eval()
    with torch.no_grad():  # a briefly trained head: small weights around the centre
        model.head[-1].weight.mul_(0.01)
    face = torch.from_numpy(read_image(ff_examples / "ex_original.png")[:128, 256:384]).float()
    face = face.permute(2, 0, 1) / 255
    # 8 clips of slightly different brightness: a realism model should rank them
    clips = torch.stack([(face * (0.9 + 0.01 * i)).clamp(0, 1) for i in range(8)])
    batch = {"plain": clips[:, None].expand(-1, 4, -1, -1, -1)}
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        features = model.frame_features(batch)
        pred = model(batch)
        bf16_head = model.head(temporal_pool(features, model.cfg.std)).squeeze(1)
    assert features.dtype == torch.bfloat16  # the backbone did run in bf16
    assert pred.dtype == torch.float32 and len(set(pred.tolist())) == 8
    assert len(set(bf16_head.float().tolist())) < 8  # what a bf16 head did: ties
    with torch.no_grad():
        fp32 = model.head(temporal_pool(features.float(), model.cfg.std)).squeeze(1)
    torch.testing.assert_close(pred, fp32)
