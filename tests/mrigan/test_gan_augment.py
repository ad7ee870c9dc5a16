"""Paired (face, MRI) augmentation: geometry moves both alike, colour touches the face only,
reproducible per step, off by default, and a killed-and-resumed augmented run is exact."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from _gan_setup import Killed, kill_at, tiny_config

from datasets_builders.synthetic import write_synthetic_mri_df
from mrigan import train as train_module
from mrigan.checkpoint import load_checkpoint
from mrigan.paired_augment import PairedAugmentConfig, build_paired_augment, step_generator
from mrigan.train import GanConfig, replace, train_gan

SIZE = 32
GEOMETRIC = PairedAugmentConfig(enabled=True, hflip_p=0.5, affine_p=1.0, degrees=20.0,
                                translate=(0.15, 0.15), scale=(0.8, 1.2), crop_p=1.0,
                                crop_scale=(0.6, 1.0))
PHOTOMETRIC = PairedAugmentConfig(enabled=True, hflip_p=0.0, jitter_p=1.0, brightness=0.3,
                                  contrast=0.3, saturation=0.3, hue=0.1, noise_p=1.0,
                                  noise_std=0.05)
FULL = dataclasses.replace(GEOMETRIC, jitter_p=1.0, noise_p=1.0, brightness=0.3, contrast=0.3,
                           saturation=0.3, hue=0.1, noise_std=0.05)


def marked_pairs(n: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Grey textured faces with one bright square marker each, and MRIs that are black except
    a blob exactly under the marker (the 'manipulated' region)."""
    g = torch.Generator().manual_seed(seed)
    faces = 0.3 + 0.1 * torch.rand(n, 3, SIZE, SIZE, generator=g)
    mris = torch.zeros(n, 3, SIZE, SIZE)
    for i in range(n):
        y, x = torch.randint(6, SIZE - 12, (2,), generator=g).tolist()
        faces[i, :, y:y + 6, x:x + 6] = 1.0
        mris[i, :, y:y + 6, x:x + 6] = 1.0
    return faces, mris


def centroids(weights: torch.Tensor) -> torch.Tensor:
    """(N, 2) weighted (row, col) centroid of each (N, H, W) map."""
    h, w = weights.shape[-2:]
    ys = torch.arange(h, dtype=weights.dtype).view(1, h, 1)
    xs = torch.arange(w, dtype=weights.dtype).view(1, 1, w)
    total = weights.sum((1, 2))
    return torch.stack(((weights * ys).sum((1, 2)) / total,
                        (weights * xs).sum((1, 2)) / total), 1)


def test_flip_only_is_torch_flip_of_both():
    faces, mris = marked_pairs()
    aug = build_paired_augment(PairedAugmentConfig(enabled=True, hflip_p=1.0), SIZE)
    out_f, out_m = aug(faces, mris, step_generator(0, 0))
    assert torch.equal(out_f, torch.flip(faces, [-1]))
    assert torch.equal(out_m, torch.flip(mris, [-1]))


def test_geometric_ops_move_the_mri_blob_where_the_face_marker_went():
    faces, mris = marked_pairs()
    aug = build_paired_augment(GEOMETRIC, SIZE)
    out_f, out_m = aug(faces, mris, step_generator(0, 1))
    # the marker is the only face content above the textured background (<= 0.4); padding is 0
    marker = (out_f[:, 0] - 0.45).clamp(min=0)
    blob = out_m[:, 0]
    assert (blob.sum((1, 2)) > 1).all() and (marker.sum((1, 2)) > 0.5).all()
    moved_to = centroids(blob)
    assert torch.allclose(centroids(marker), moved_to, atol=0.75)
    # and the transforms really moved things (not an identity that trivially agrees)
    shift = (moved_to - centroids(mris[:, 0])).norm(dim=1)
    assert (shift > 1.0).float().mean() > 0.5, shift
    # identical parameters and resampling: a face equal to its MRI stays equal to it
    same_f, same_m = aug(mris, mris.clone(), step_generator(0, 1))
    assert torch.equal(same_f, same_m) and torch.equal(same_m, out_m)


def test_photometric_ops_change_the_face_and_leave_the_mri_bit_identical():
    faces, mris = marked_pairs()
    out_f, out_m = build_paired_augment(PHOTOMETRIC, SIZE)(faces, mris, step_generator(0, 2))
    assert torch.equal(out_m, mris)
    assert (out_f - faces).abs().flatten(1).amax(1).min() > 0.02  # every face changed
    # with geometry too: the MRI is what geometry alone makes of it (colour never reaches it)
    _, full_m = build_paired_augment(FULL, SIZE)(faces, mris, step_generator(0, 3))
    _, geo_m = build_paired_augment(GEOMETRIC, SIZE)(faces, mris, step_generator(0, 3))
    assert torch.equal(full_m, geo_m)


def test_outputs_stay_in_range_with_shapes_and_dtypes_and_global_rng_untouched():
    faces, mris = marked_pairs(8)
    faces[:, :, :4] = 0.0  # extremes: noise and jitter must not push them outside [0, 1]
    faces[:, :, -4:] = 1.0
    before = torch.get_rng_state()
    out_f, out_m = build_paired_augment(FULL, SIZE)(faces, mris, step_generator(0, 4))
    assert torch.equal(torch.get_rng_state(), before)  # dropout noise is not shifted by it
    for out in (out_f, out_m):
        assert out.shape == (8, 3, SIZE, SIZE) and out.dtype == torch.float32
        assert out.device == faces.device
        assert out.min() >= 0 and out.max() <= 1
    assert out_f.min() == 0 and out_f.max() == 1  # clamped, not rescaled


def test_same_step_same_output_other_step_or_rank_other_output():
    faces, mris = marked_pairs(8)
    aug = build_paired_augment(FULL, SIZE)
    a = aug(faces, mris, step_generator(5, 7))
    b = build_paired_augment(FULL, SIZE)(faces, mris, step_generator(5, 7))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    for other in (step_generator(5, 8), step_generator(5, 7, rank=1), step_generator(6, 7)):
        c = aug(faces, mris, other)
        assert not torch.equal(a[0], c[0]) and not torch.equal(a[1], c[1])


def test_disabled_config_is_the_identity_and_the_default():
    faces, mris = marked_pairs(4)
    assert GanConfig().augment == PairedAugmentConfig() and not PairedAugmentConfig().enabled
    out_f, out_m = build_paired_augment(dataclasses.replace(FULL, enabled=False), SIZE)(
        faces, mris, step_generator(0, 0))
    assert out_f is faces and out_m is mris
    with pytest.raises(ValueError, match="must both be"):
        build_paired_augment(FULL, SIZE)(faces, mris[:, :, :16], step_generator(0, 0))


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    torch.set_num_threads(1)
    return write_synthetic_mri_df(tmp_path_factory.mktemp("mri_df"), n_faces=8, size=32)


def test_killed_and_resumed_augmented_run_reaches_the_same_weights(tiny_data, tmp_path,
                                                                  monkeypatch):
    augment = dataclasses.asdict(dataclasses.replace(FULL, crop_scale=(0.7, 1.0)))
    common = {"max_steps": 8, "checkpoint_every": 3, "eval_every": 4}

    def cfg(name):
        return replace(tiny_config(tiny_data, tmp_path, name, **common), augment=augment)

    # record what the trainer augments: training batches (4) only, never the held-out 8
    seen = []
    real_build = train_module.build_paired_augment

    def recording_build(aug_cfg, image_size):
        inner = real_build(aug_cfg, image_size)

        def recorded(faces, mris, generator):
            seen.append(faces.shape[0])
            return inner(faces, mris, generator)

        return recorded

    monkeypatch.setattr(train_module, "build_paired_augment", recording_build)
    full = train_gan(cfg("full"))
    assert seen == [4] * 8
    plain = train_gan(tiny_config(tiny_data, tmp_path, "plain", **common))

    split_cfg = cfg("split")
    with pytest.raises(Killed):
        train_gan(split_cfg, callbacks=[kill_at(5)])
    assert load_checkpoint(split_cfg.run_dir / "checkpoints" / "last.pt")["step"] == 3
    resumed = train_gan(split_cfg, resume=True)

    a, b = load_checkpoint(full.last_checkpoint), load_checkpoint(resumed.last_checkpoint)
    p = load_checkpoint(plain.last_checkpoint)
    assert a["step"] == b["step"] == 8
    for part in ("generator", "discriminator"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)
    assert [h["mean_ssim"] for h in a["history"]] == [h["mean_ssim"] for h in b["history"]]
    # augmentation was really applied: the same seed without it trains other weights
    assert any(not torch.equal(a["generator"][k], p["generator"][k]) for k in a["generator"])
