"""SSIM / MRI maps against scikit-image and SciPy, on real FaceForensics frames and random images."""

from __future__ import annotations

import multiprocessing
import re
import struct
import warnings
import zlib
from contextlib import contextmanager

import av
import numba
import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.metrics import structural_similarity

from mrigan import _ssim_cpu, perceptual
from mrigan.errors import InputValueError
from mrigan.fileio import MAX_PIXELS_ENV, ImageFileError, read_image

SK = dict(channel_axis=-1, full=True, gaussian_weights=True, sigma=1.5,
          use_sample_covariance=False)


def sk_ssim_full(a: np.ndarray, b: np.ndarray, data_range: float, **kw) -> np.ndarray:
    return structural_similarity(a, b, data_range=data_range, **{**SK, **kw})[1]


def scipy_ssim_full(a, b, data_range, sigma=1.5, truncate=3.5) -> np.ndarray:
    """scikit-image's formula on SciPy's Gaussian filter (mode 'reflect') in float64, without
    scikit-image's refusal of images smaller than the window."""
    out = np.empty(a.shape)
    for ch in range(a.shape[-1]):
        x, y = a[..., ch].astype(np.float64), b[..., ch].astype(np.float64)
        filt = lambda z: ndimage.gaussian_filter(z, sigma, truncate=truncate, mode="reflect")  # noqa: E731
        ux, uy, uxx, uyy, uxy = filt(x), filt(y), filt(x * x), filt(y * y), filt(x * y)
        vx, vy, vxy = uxx - ux * ux, uyy - uy * uy, uxy - ux * uy
        c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
        out[..., ch] = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return out


def nchw(a: np.ndarray, dtype=torch.float32) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))[None]).to(dtype)


def hwc(t: torch.Tensor) -> np.ndarray:
    return t.detach()[0].permute(1, 2, 0).double().numpy()


@contextmanager
def torch_threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny torch ops on 2 shared cores run many times slower with 2 threads."""
    with torch_threads(1):
        yield


@pytest.fixture
def fused_only(monkeypatch):
    """Fail if the torch fallback runs: the numba kernel must handle the case itself."""
    def forbidden(*args, **kwargs):
        raise AssertionError("the torch path ran instead of the fused kernel")
    monkeypatch.setattr(perceptual, "_ssim_map_torch", forbidden)


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


@pytest.fixture(scope="module")
def dark_flat_crop(ffpp_root):
    """128x128 of the first frames of FF++ original 004 and its NeuralTextures fake, around a
    flat near-black patch (values 3-5): there float32 sums of squares of centred values
    (~1.6e4) lose ~1.1e-4 of SSIM, more than the parity target."""
    def crop(path):
        with av.open(str(path)) as container:
            frame = next(container.decode(video=0)).to_ndarray(format="rgb24")
        return np.ascontiguousarray(frame[512:640, 533:661])
    return (crop(ffpp_root / "original_sequences/youtube/c23/videos/004.mp4"),
            crop(ffpp_root / "manipulated_sequences/NeuralTextures/c23/videos/004_982.mp4"))


@pytest.mark.parametrize("grad", [False, True], ids=["fused", "autograd"])
def test_float32_maps_keep_parity_in_flat_dark_regions_of_real_frames(dark_flat_crop, grad):
    # the fused kernel works in float32 and redoes in float64 the rows whose error bound
    # exceeds _ssim_cpu.ERROR_BOUND (2.5e-5); the autograd path works in float64
    limit = 3e-5 if not grad else 1e-5
    real, fake = dark_flat_crop
    x, y = nchw(real), nchw(fake).requires_grad_(grad)
    got = perceptual.ssim_map(x, y, data_range=255)
    assert got.dtype == torch.float32
    assert np.abs(hwc(got) - sk_ssim_full(real, fake, 255)).max() < limit
    mri = perceptual.mri_map(x, y, data_range=255)
    assert np.abs(hwc(mri) - np.clip(1 - sk_ssim_full(real, fake, 255), 0, 1)).max() < limit


@pytest.mark.parametrize("shape", [(13, 17, 3), (31, 12, 1), (65, 101, 3), (128, 96, 2)])
@pytest.mark.parametrize("grad", [False, True], ids=["fused", "autograd"])
def test_ssim_map_matches_skimage_on_random_odd_sizes(shape, grad):
    rng = np.random.default_rng(sum(shape))
    a = rng.random(shape)
    b = np.clip(a + rng.normal(0, 0.2, shape) * (rng.random(shape) > 0.5), 0, 1)
    ref = sk_ssim_full(a, b, 1.0)
    got = perceptual.ssim_map(nchw(a).requires_grad_(grad), nchw(b), data_range=1.0)
    assert np.abs(got.detach()[0].permute(1, 2, 0).numpy() - ref).max() < 1e-4


@pytest.mark.parametrize("threads", [1, 2])
def test_batched_equals_one_at_a_time(fused_only, threads):
    # with 2 threads one image (big enough to be worth it) is split into bands of rows handled
    # by different threads: every row must come out the same as in a batch
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 310, 301, generator=g)
    y = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    with torch_threads(threads):
        batched = perceptual.ssim_map(x, y, data_range=1.0)
        singles = [perceptual.ssim_map(x[i : i + 1], y[i : i + 1], data_range=1.0) for i in range(3)]
    torch.testing.assert_close(batched, torch.cat(singles), rtol=0, atol=0)
    ref = np.stack([sk_ssim_full(x[i].permute(1, 2, 0).numpy(), y[i].permute(1, 2, 0).numpy(), 1.0)
                    for i in range(3)])
    assert np.abs(batched.permute(0, 2, 3, 1).numpy() - ref).max() < 1e-4


def test_channels_last_inputs_give_the_same_maps_in_the_same_layout(ff_pair, fused_only):
    # torch.from_numpy(hwc).permute(...) is how frames arrive: read in place, no transposed copy
    real, fake, _ = ff_pair
    x = torch.from_numpy(real)[None].permute(0, 3, 1, 2).float()
    y = torch.from_numpy(fake)[None].permute(0, 3, 1, 2).float()
    assert x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    got = perceptual.ssim_map(x, y, data_range=255)
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert np.abs(hwc(got) - sk_ssim_full(real, fake, 255)).max() < 1e-4
    plain = perceptual.ssim_map(x.contiguous(), y.contiguous(), data_range=255)
    torch.testing.assert_close(got, plain, rtol=0, atol=1e-6)
    # mixed layouts and integer tensors are accepted too
    torch.testing.assert_close(perceptual.ssim_map(x, y.contiguous(), data_range=255), got,
                               rtol=0, atol=1e-6)
    ints = perceptual.ssim_map(x.to(torch.uint8), y.to(torch.uint8), data_range=255)
    torch.testing.assert_close(ints, got, rtol=0, atol=1e-6)


@pytest.mark.parametrize("sigma", [0.5, 1.0])
def test_smaller_windows_match_skimage(sigma, fused_only):
    # scikit-image sizes the Gaussian window from sigma (truncate 3.5): 5 taps at 0.5, 9 at 1.0;
    # the fused kernel runs them with zero-padded 11-tap code
    window = 2 * int(3.5 * sigma + 0.5) + 1
    rng = np.random.default_rng(7)
    a = rng.random((37, 29, 3))
    b = np.clip(a + rng.normal(0, 0.15, a.shape), 0, 1)
    got = perceptual.ssim_map(nchw(a), nchw(b), data_range=1.0, window=window, sigma=sigma)
    assert np.abs(hwc(got) - sk_ssim_full(a, b, 1.0, sigma=sigma)).max() < 1e-4


@pytest.mark.parametrize("shape", [(6, 6, 3), (6, 40, 1), (23, 7, 2)])
@pytest.mark.parametrize("grad", [False, True], ids=["fused", "autograd"])
def test_images_barely_larger_than_the_radius_match_scipy(shape, grad):
    # scikit-image refuses images smaller than the window; SciPy's filter (which it uses) does not
    rng = np.random.default_rng(sum(shape))
    a = rng.integers(0, 256, shape).astype(np.float64)
    b = np.clip(a + rng.normal(0, 40, shape), 0, 255)
    got = perceptual.ssim_map(nchw(a).requires_grad_(grad), nchw(b), data_range=255)
    assert np.abs(hwc(got) - scipy_ssim_full(a, b, 255)).max() < 1e-4


# --- the float32 kernel (issue 24 goal 1): float32 rows, float64 where the bound says so ------


def _kernel_map(real, fake, dtype, precision="auto", stats=None):
    """MRI of HxWxC images through the kernel, one plane per channel (rows of one channel)."""
    planes = [np.ascontiguousarray(a.transpose(2, 0, 1), dtype=dtype) for a in (real, fake)]
    out = _ssim_cpu.ssim_rows(*planes, step=1, taps=perceptual._gaussian_taps_np(11, 1.5),
                              data_range=255.0, k1=0.01, k2=0.03, mri=True,
                              precision=precision, stats=stats)
    return out.transpose(1, 2, 0)


@pytest.mark.parametrize("crop", [(slice(None), slice(None)), (slice(37, 208), slice(251, 414))],
                         ids=["frame", "odd-crop"])
@pytest.mark.parametrize("layout", ["nchw", "channels-last"])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_every_fast_path_matches_skimage_at_every_pixel(ff_pair, fused_only, crop, layout, dtype):
    real, fake = (np.ascontiguousarray(a[crop]) for a in ff_pair[:2])
    ref = np.clip(1 - sk_ssim_full(real, fake, 255), 0, 1)
    if layout == "nchw":
        x, y = (torch.from_numpy(np.ascontiguousarray(a.astype(dtype).transpose(2, 0, 1)))[None]
                for a in (real, fake))
        got = hwc(perceptual.mri_map(x, y, data_range=255))
    else:
        got = perceptual.mri_map_np(real.astype(dtype), fake.astype(dtype), data_range=255)
    assert got.shape == ref.shape and got.dtype in (np.float32, np.float64)
    err = np.abs(got - ref)
    assert err.max() <= 1e-4
    assert err[:5].max() <= 1e-4 and err[-5:].max() <= 1e-4  # borders: mirrored rows
    assert err[:, :5].max() <= 1e-4 and err[:, -5:].max() <= 1e-4  # and columns
    stats: dict = {}
    _kernel_map(real, fake, dtype, stats=stats)
    assert stats["rows_float64"] < stats["rows"] / 10  # it is the float32 arithmetic that passed


def test_float64_rows_fix_what_float32_misses(dark_flat_crop, monkeypatch):
    # the flat near-black crop: float32 alone misses by ~1.7e-5; with a 5e-6 bound the rows it
    # flags are redone in float64 and every value comes within the bound
    real, fake = dark_flat_crop
    ref = np.clip(1 - sk_ssim_full(real, fake, 255), 0, 1)
    monkeypatch.setattr(_ssim_cpu, "ERROR_BOUND", 1e9)
    pure = np.abs(_kernel_map(real, fake, np.uint8) - ref).max()
    assert 2e-6 < pure < 1e-4
    monkeypatch.setattr(_ssim_cpu, "ERROR_BOUND", 5e-6)
    stats: dict = {}
    fixed = np.abs(_kernel_map(real, fake, np.uint8, stats=stats) - ref).max()
    assert 0 < stats["rows_float64"] < stats["rows"] and fixed <= 5e-6, (stats, fixed)
    # the estimate follows the real error: at a 1e-5 bound no value misses by 2e-5
    monkeypatch.setattr(_ssim_cpu, "ERROR_BOUND", 1e-5)
    assert np.abs(_kernel_map(real, fake, np.float32) - ref).max() <= 2e-5
    # precision="float64": every row in float64 (the kernel before float32)
    stats = {}
    exact = np.abs(_kernel_map(real, fake, np.float32, "float64", stats) - ref).max()
    assert exact <= 1e-7 and stats["rows_float64"] == stats["rows"]


def test_non_finite_values_are_counted_in_every_layout():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 3, 40, 50, generator=g)
    x[1, 2, 7, 9], x[0, 0, 0, 0], x[1, 1, 39, 49] = float("nan"), float("inf"), -float("inf")
    for t in (x, x.contiguous(memory_format=torch.channels_last), x.double(),
              x[:, :, ::2], x.transpose(2, 3)):  # dense, channels-last, float64, strided
        expected = int((~torch.isfinite(t)).sum())
        with pytest.raises(InputValueError, match=f"real image has {expected} non-finite"):
            perceptual.check_finite(t, names=("real",))
    perceptual.check_finite(torch.nan_to_num(x), names=("real",))


def test_mri_concentrates_inside_the_manipulation_mask(ff_pair):
    real, fake, mask = ff_pair
    mri = perceptual.mri_map_np(real, fake)
    assert mri.min() >= 0.0 and mri.max() <= 1.0
    inside, outside = mri[mask].mean(), mri[~mask].mean()
    assert inside >= 10 * outside, (inside, outside)
    assert inside > 0.2


def test_mri_clips_instead_of_wrapping(fused_only):
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


def test_identical_inputs_give_exactly_zero(ff_pair, fused_only):
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
    # float32, as in training (computed in float32 there), agrees on the mean too
    z32 = z.detach().float().requires_grad_(True)
    loss32 = perceptual.ssim_loss(x.float(), z32, data_range=1.0)
    assert loss32.dtype == torch.float32 and loss32.item() == pytest.approx(expect, abs=1e-3)
    loss32.backward()
    assert torch.isfinite(z32.grad).all()
    torch.testing.assert_close(z32.grad.double(), z.grad, rtol=1e-3, atol=1e-6)


def test_autocast_does_not_lower_the_precision_of_the_differentiable_path(ff_pair):
    # GAN training runs under autocast (bf16 on CPU, fp16 on CUDA): SSIM must not follow it
    real, fake, _ = ff_pair
    x, y = nchw(real[:96, :96]), nchw(fake[:96, :96]).requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = perceptual.ssim_map(x, y, data_range=255)
    assert got.dtype == torch.float32
    assert np.abs(hwc(got) - sk_ssim_full(real[:96, :96], fake[:96, :96], 255)).max() < 1e-5
    # the training loss works in float32 (not float64), and not in bfloat16 either
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss_autocast = perceptual.ssim_loss(x / 255, y / 255)
    loss = perceptual.ssim_loss(x / 255, y / 255)
    assert loss_autocast.dtype == torch.float32
    assert loss_autocast.item() == pytest.approx(loss.item(), abs=1e-6)


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


def _mri_mean_in_child(queue, a, b):
    queue.put(float(perceptual.mri_map_np(a, b).mean()))


def test_forked_workers_can_compute_maps_after_the_parent_did():
    # numba's OpenMP threading layer SIGTERMs a forked child that uses it after its parent did;
    # DataLoader workers and process pools fork exactly like that
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)
    b = np.clip(a + rng.normal(0, 20, a.shape), 0, 255).astype(np.uint8)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    with torch_threads(2), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (Python >= 3.12)
        expect = float(perceptual.mri_map_np(a, b).mean())
        child = ctx.Process(target=_mri_mean_in_child, args=(queue, a, b))
        child.start()
        child.join(120)
    assert child.exitcode == 0
    assert queue.get(timeout=10) == expect


def _plus_one(v):
    return v + 1


def test_kernel_is_cached_on_disk_when_a_cache_location_is_writable(monkeypatch, tmp_path):
    monkeypatch.setattr(numba.core.config, "CACHE_LOCATOR_CLASSES", "UserProvidedCacheLocator")
    monkeypatch.setattr(numba.core.config, "CACHE_DIR", str(tmp_path))
    assert _ssim_cpu.jit_with_disk_cache(_plus_one)(1) == 2
    assert list(tmp_path.rglob("*_plus_one*.nbi")) and list(tmp_path.rglob("*_plus_one*.nbc"))


def test_kernel_compiles_in_memory_when_no_cache_location_is_writable(monkeypatch):
    monkeypatch.setattr(numba.core.config, "CACHE_LOCATOR_CLASSES", "UserProvidedCacheLocator")
    monkeypatch.setattr(numba.core.config, "CACHE_DIR", "/proc/mrigan-not-writable")
    with pytest.warns(RuntimeWarning, match="without an on-disk cache"):
        plus_one = _ssim_cpu.jit_with_disk_cache(_plus_one)
    assert plus_one(41) == 42


def test_parallel_runner_covers_every_task_once_and_reraises_errors():
    seen: list[int] = []
    _ssim_cpu.run_parallel(lambda first, last: seen.extend(range(first, last)), 37, threads=3)
    assert sorted(seen) == list(range(37))

    def fails(first, last):
        raise ValueError(f"task {first}")

    with pytest.raises(ValueError, match="task"):
        _ssim_cpu.run_parallel(fails, 10, threads=2)


# --- non-finite values and mixed dtypes are refused (issue 15 family 4) ----------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("path", ["fused", "torch", "np"])
def test_one_non_finite_pixel_is_an_error_not_a_map(ff_pair, bad, path):
    real, fake, _ = ff_pair
    fake = fake.astype(np.float32)
    fake[200, 300, 1] = bad
    real_f = real.astype(np.float32)
    with pytest.raises(InputValueError, match=r"fake image has 1 non-finite value"):
        if path == "np":
            perceptual.mri_map_np(real_f, fake, data_range=255)
        else:
            x, y = perceptual._to_nchw(real_f), perceptual._to_nchw(fake)
            if path == "torch":
                x, y = x.double(), y.double()
            perceptual.mri_map(x, y, data_range=255)


def test_the_same_pair_without_the_bad_pixel_is_finite_and_in_range(ff_pair):
    real, fake, _ = ff_pair
    mri = perceptual.mri_map_np(real.astype(np.float32), fake.astype(np.float32), data_range=255)
    assert np.isfinite(mri).all() and mri.min() >= 0 and mri.max() <= 1


def test_uint8_real_with_float_fake_is_refused_by_the_documented_rule(ff_pair):
    real, fake, _ = ff_pair
    with pytest.raises(InputValueError, match="uint8 image with a float32 image"):
        perceptual.mri_map_np(real, fake.astype(np.float32) / 255, data_range=255)
    with pytest.raises(InputValueError, match="torch.uint8 image with a torch.float32"):
        perceptual.mri_map(perceptual._to_nchw(real).to(torch.uint8),
                           perceptual._to_nchw(fake) / 255, data_range=255)
    # two integer images are fine (converted to float32 together), and match the float path
    got = perceptual.mri_map(torch.from_numpy(real).permute(2, 0, 1)[None],
                             torch.from_numpy(fake).permute(2, 0, 1)[None], data_range=255)
    want = perceptual.mri_map_np(real, fake)
    np.testing.assert_allclose(got[0].permute(1, 2, 0).numpy(), want, atol=1e-6)


def test_mri_to_uint8_refuses_nan_instead_of_writing_zero():
    mri = np.full((8, 8, 3), 0.5, np.float32)
    assert perceptual.mri_to_uint8(mri).max() == 128
    mri[3, 3, 0] = np.nan
    with pytest.raises(InputValueError, match="1 non-finite"):
        perceptual.mri_to_uint8(mri)
    with pytest.raises(InputValueError, match="non-finite"):
        perceptual.mri_to_uint8(torch.from_numpy(mri))


def test_gms_refuses_non_finite_too():
    x = torch.rand(1, 3, 16, 16)
    y = x.clone()
    y[0, 0, 0, 0] = float("nan")
    with pytest.raises(InputValueError, match="non-finite"):
        perceptual.get("gms")(x, y, data_range=1.0)


# --- image reading: pixel cap before decoding (issue 15 family 9) ----------------------------


def _png_header_only(path, width, height):
    """A PNG whose header says width x height (one row of data: a decompression-bomb stand-in)."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\x00" * (width * 3 + 1)))
                     + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [12000, 20000])
def test_huge_images_are_refused_from_their_header(tmp_path, side):
    path = tmp_path / f"big{side}.png"
    _png_header_only(path, side, side)
    with pytest.raises(ImageFileError, match=rf"big{side}\.png: image of .*pixels is over the cap"):
        read_image(path)


def test_pixel_cap_is_configurable(ff_examples, monkeypatch):
    real = ff_examples / "ex_original.png"  # 640x480 = 307,200 pixels
    assert read_image(real).shape == (480, 640, 3)
    with pytest.raises(ImageFileError, match="640x480 = 307,200 pixels is over the cap of 300,000"):
        read_image(real, max_pixels=300_000)
    monkeypatch.setenv(MAX_PIXELS_ENV, "1e5")
    with pytest.raises(ImageFileError, match="cap of 100,000"):
        read_image(real)
    assert read_image(real, max_pixels=0).shape == (480, 640, 3)  # 0: no cap


def test_unreadable_images_name_the_file(tmp_path, ff_examples):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    truncated = tmp_path / "half.png"
    truncated.write_bytes((ff_examples / "ex_original.png").read_bytes()[:200])
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    for path in (empty, truncated, text):
        with pytest.raises(ImageFileError, match=re.escape(str(path)) + ": not a readable image"):
            read_image(path)
    with pytest.raises(FileNotFoundError, match="missing.png: no such image file"):
        read_image(tmp_path / "missing.png")
