"""SSIM / MRI maps against scikit-image, on real FaceForensics frames and random images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from mrigan import perceptual
from mrigan.fileio import read_image

SK = dict(channel_axis=-1, full=True, gaussian_weights=True, sigma=1.5,
          use_sample_covariance=False)


def sk_ssim_full(a: np.ndarray, b: np.ndarray, data_range: float) -> np.ndarray:
    return structural_similarity(a, b, data_range=data_range, **SK)[1]


def nchw(a: np.ndarray, dtype=torch.float32) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))[None]).to(dtype)


@pytest.fixture(scope="module")
def ff_pair(ff_examples):
    real = read_image(ff_examples / "ex_original.png")
    fake = read_image(ff_examples / "ex_deepfakes.png")
    mask = read_image(ff_examples / "ex_deepfakes_mask.png")[..., 0] > 127
    return real, fake, mask


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("grad", [False, True], ids=["fused", "autograd"])
def test_ssim_map_matches_skimage_on_real_frames(ff_pair, dtype, grad):
    real, fake, _ = ff_pair
    ref = sk_ssim_full(real, fake, 255)
    x, y = nchw(real, dtype), nchw(fake, dtype).requires_grad_(grad)
    got = perceptual.ssim_map(x, y, data_range=255)
    assert got.shape == x.shape and got.dtype == dtype
    err = np.abs(got.detach()[0].permute(1, 2, 0).double().numpy() - ref)
    assert err.max() < (1e-4 if dtype == torch.float32 else 1e-9)
    # borders included: the outermost rows/columns are where padding modes differ
    assert err[:5].max() < 1e-4 and err[:, -5:].max() < 1e-4


@pytest.mark.parametrize("shape", [(13, 17, 3), (31, 12, 1), (65, 101, 3), (128, 96, 2)])
@pytest.mark.parametrize("grad", [False, True], ids=["fused", "autograd"])
def test_ssim_map_matches_skimage_on_random_odd_sizes(shape, grad):
    rng = np.random.default_rng(sum(shape))
    a = rng.random(shape)
    b = np.clip(a + rng.normal(0, 0.2, shape) * (rng.random(shape) > 0.5), 0, 1)
    ref = sk_ssim_full(a, b, 1.0)
    got = perceptual.ssim_map(nchw(a).requires_grad_(grad), nchw(b), data_range=1.0)
    assert np.abs(got.detach()[0].permute(1, 2, 0).numpy() - ref).max() < 1e-4


def test_batched_equals_one_at_a_time():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(5, 3, 40, 33, generator=g)
    y = (x + 0.1 * torch.randn(5, 3, 40, 33, generator=g)).clamp(0, 1)
    batched = perceptual.ssim_map(x, y, data_range=1.0)
    for i in range(5):
        single = perceptual.ssim_map(x[i : i + 1], y[i : i + 1], data_range=1.0)
        torch.testing.assert_close(batched[i : i + 1], single, rtol=0, atol=1e-6)


def test_mri_concentrates_inside_the_manipulation_mask(ff_pair):
    real, fake, mask = ff_pair
    mri = perceptual.mri_map_np(real, fake)
    assert mri.min() >= 0.0 and mri.max() <= 1.0
    inside, outside = mri[mask].mean(), mri[~mask].mean()
    assert inside >= 10 * outside, (inside, outside)
    assert inside > 0.2


def test_mri_clips_instead_of_wrapping():
    # an image against its negative has SSIM < 0 in places: 1 - SSIM > 1 must clip to 1
    rng = np.random.default_rng(1)
    a = (rng.random((32, 32, 3)) * 255).astype(np.uint8)
    b = 255 - a
    raw = 1 - sk_ssim_full(a, b, 255)
    assert raw.max() > 1.0
    mri = perceptual.mri_map_np(a, b)
    assert mri.max() == pytest.approx(1.0) and mri.min() >= 0
    np.testing.assert_allclose(mri, np.clip(raw, 0, 1), atol=1e-4)
    assert perceptual.mri_to_uint8(mri).max() == 255


def test_identical_inputs_give_exactly_zero(ff_pair):
    real, _, _ = ff_pair
    assert perceptual.mri_map_np(real, real).max() == 0.0
    x = nchw(real) / 255
    assert perceptual.mri_map(x, x.clone(), data_range=1.0).max().item() == 0.0


def test_ssim_loss_is_zero_and_has_finite_gradient_at_identity():
    x = torch.rand(2, 3, 24, 24, dtype=torch.float64)
    y = x.clone().requires_grad_(True)
    loss = perceptual.ssim_loss(x, y, data_range=1.0)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-7)
    assert torch.isfinite(y.grad).all()
    # away from identity it equals sqrt(1 - mean SSIM) and is differentiable
    z = (x + 0.1 * torch.randn_like(x)).requires_grad_(True)
    loss = perceptual.ssim_loss(x, z, data_range=1.0)
    expect = np.sqrt(1 - sk_ssim_full(x[0].permute(1, 2, 0).numpy(), z[0].detach().permute(1, 2, 0).numpy(), 1.0).mean() / 2
                     - sk_ssim_full(x[1].permute(1, 2, 0).numpy(), z[1].detach().permute(1, 2, 0).numpy(), 1.0).mean() / 2)
    assert loss.item() == pytest.approx(expect, abs=1e-4)
    loss.backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_ssim_map_gradient_matches_finite_differences():
    torch.manual_seed(0)
    x = torch.rand(1, 1, 12, 12, dtype=torch.float64)
    y = torch.rand(1, 1, 12, 12, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda v: perceptual.ssim_map(x, v, data_range=1.0, window=5, sigma=1.0), (y,)
    )


def test_registry_offers_ssim_and_gms(ff_pair):
    assert {"ssim", "gms"} <= set(perceptual.DISSIMILARITIES.names())
    real, fake, mask = ff_pair
    x, y = nchw(real), nchw(fake)
    gms = perceptual.get("gms")(x, y, data_range=255.0)[0].permute(1, 2, 0).numpy()
    assert 0 <= gms.min() and gms.max() <= 1
    assert gms[mask].mean() > 5 * gms[~mask].mean()
    assert perceptual.get("gms")(x, x, data_range=255.0).max().item() == pytest.approx(0, abs=1e-6)
    with pytest.raises(KeyError, match="known: gms, ssim"):
        perceptual.get("lpips-not-here")


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="shape"):
        perceptual.ssim_map(torch.zeros(1, 3, 20, 20), torch.zeros(1, 3, 20, 21), data_range=1)
    with pytest.raises(ValueError, match="data_range"):
        perceptual.ssim_map(torch.zeros(1, 3, 20, 20), torch.zeros(1, 3, 20, 20), data_range=0)
    with pytest.raises(ValueError, match="too small"):
        perceptual.ssim_map(torch.zeros(1, 3, 4, 20), torch.zeros(1, 3, 4, 20), data_range=1)
    with pytest.raises(ValueError, match="data_range is required"):
        perceptual.mri_map_np(np.zeros((20, 20, 3)), np.zeros((20, 20, 3)))
