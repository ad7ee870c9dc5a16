"""Heads, detectors, losses, samplers, grouped splits, augmentations and Grad-CAM."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import sigmoid_focal_loss

from detectors.augment import AUGMENTATIONS, build_augmenter
from detectors.backbones import Backbone
from detectors.config import DetectorModelConfig
from detectors.data import SplitLeakError, check_grouped, group_splits, select_rows
from detectors.explain import gradcam, overlay
from detectors.heads import PaperHead, TemporalHead
from detectors.losses import LOSSES, class_weights
from detectors.model import FrameDetector, build_detector
from detectors.samplers import epoch_batches, paired_batches

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_paper_head_is_the_papers_layers():
    head = PaperHead(1280)
    layers = [head.pool, head.fc1, head.dropout, head.relu, head.fc2]
    assert isinstance(layers[0], nn.AdaptiveAvgPool2d)
    assert (head.fc1.in_features, head.fc1.out_features) == (1280, 128)
    assert head.dropout.p == 0.5 and isinstance(head.relu, nn.ReLU)
    assert (head.fc2.in_features, head.fc2.out_features) == (128, 1)
    head.eval()
    fmap = torch.rand(3, 1280, 7, 7)
    expected = head.fc2(torch.relu(head.fc1(fmap.mean(dim=(2, 3))))).squeeze(1)
    torch.testing.assert_close(head(fmap), expected)
    torch.testing.assert_close(head(fmap.mean(dim=(2, 3))), expected)  # pooled input too


def test_temporal_head_ignores_padding_and_sees_order():
    torch.manual_seed(0)
    head = TemporalHead(16, hidden=8).eval()
    clip = torch.randn(1, 5, 16)
    padded = torch.cat([clip, 100 * torch.randn(1, 3, 16)], dim=1)
    mask = torch.tensor([[True] * 5 + [False] * 3])
    torch.testing.assert_close(head(padded, mask), head(clip))
    # a bidirectional LSTM is order-sensitive (unlike mean pooling of frame scores)
    assert not torch.allclose(head(clip), head(clip.flip(1)))
    with pytest.raises(ValueError, match="at least one valid frame"):
        head(clip, torch.zeros(1, 5, dtype=torch.bool))


def test_temporal_detector_runs_backbone_on_valid_frames_only():
    det = build_detector(DetectorModelConfig(backbone="tiny-cnn", temporal=True, lstm_hidden=8)).eval()
    clips = torch.rand(2, 4, 3, 32, 32)
    mask = torch.tensor([[True, True, True, False], [True, False, False, False]])
    calls = []
    det.backbone.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    out = det(clips, mask)
    assert out.shape == (2,) and calls == [4]
    # the padded frames do not matter
    clips2 = clips.clone()
    clips2[~mask] = torch.rand_like(clips2[~mask])
    torch.testing.assert_close(det(clips2, mask), out)


def test_bce_with_label_smoothing_matches_torch():
    logits = torch.randn(10)
    y = torch.randint(0, 2, (10,)).float()
    smoothed = y * 0.9 + 0.05
    expected = F.binary_cross_entropy(torch.sigmoid(logits), smoothed)
    torch.testing.assert_close(LOSSES.get("bce")(logits, y, label_smoothing=0.1), expected)
    w = class_weights(y)
    expected_w = (F.binary_cross_entropy(torch.sigmoid(logits), smoothed, reduction="none")
                  * w[y.long()]).sum() / w[y.long()].sum()
    torch.testing.assert_close(LOSSES.get("bce")(logits, y, w[y.long()], label_smoothing=0.1),
                               expected_w)


def test_focal_matches_torchvision():
    logits = torch.randn(64) * 3
    y = torch.randint(0, 2, (64,)).float()
    ours = LOSSES.get("focal")(logits, y, alpha=0.25, gamma=2.0, label_smoothing=0.0)
    ref = sigmoid_focal_loss(logits, y, alpha=0.25, gamma=2.0, reduction="mean")
    torch.testing.assert_close(ours, ref)


def test_class_weights_balance_the_classes():
    y = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1])
    w = class_weights(y)[y]
    assert w[y == 0].sum() == pytest.approx(w[y == 1].sum())
    assert w.sum() == pytest.approx(len(y))


def test_paired_batches_put_each_fake_with_its_own_real():
    # identities a,b,c with reals; fakes of a (x2, two methods) and b; d has a fake but no real
    labels = [0, 0, 0, 1, 1, 1, 1]
    keys = [("a", 0, "0"), ("b", 0, "0"), ("c", 0, "0"), ("a", 0, "0"), ("a", 0, "0"),
            ("b", 0, "0"), ("d", 0, "0")]
    batches = paired_batches(labels, keys, batch_size=4, epoch=0, seed=1)
    flat = [i for b in batches for i in b]
    assert sorted(i for i in flat if labels[i] == 1) == [3, 4, 5, 6]  # every fake once
    for b in batches:
        assert len(b) in (2, 4)
        for fake, real in zip(b[0::2], b[1::2], strict=True):
            assert labels[fake] == 1 and labels[real] == 0
            if keys[fake][0] != "d":
                assert keys[real] == keys[fake]
    assert batches == paired_batches(labels, keys, batch_size=4, epoch=0, seed=1)
    assert batches != paired_batches(labels, keys, batch_size=4, epoch=1, seed=1)


def test_epoch_batches_balance_modes():
    labels = [0] * 30 + [1] * 10
    keys = [("x", i, "0") for i in range(40)]
    sample = [i for b in epoch_batches(labels, keys, balance="sample", batch_size=8, epoch=0,
                                       seed=0) for i in b]
    assert sum(labels[i] for i in sample) == 10 and len(sample) == 20
    plain = [i for b in epoch_batches(labels, keys, balance="weight", batch_size=8, epoch=0,
                                      seed=0) for i in b]
    assert sorted(plain) == list(range(40))
    with pytest.raises(ValueError, match="unknown balance"):
        epoch_batches(labels, keys, balance="smote", batch_size=8, epoch=0, seed=0)


def _rows():
    rows = []
    for ident in "abcdefghij":
        rows.append({"video": f"{ident}_real", "identity": ident, "label": 0, "frame": 0,
                     "track": "0", "method": "original", "source": "s", "split": "train"})
        for m in ("DF", "NT"):
            rows.append({"video": f"{ident}_{m}", "identity": ident, "label": 1, "frame": 0,
                         "track": "0", "method": m, "source": "s", "split": "train"})
    # a face swap links identity j's video to identity a
    rows.append({"video": "a_NT", "identity": "j", "label": 1, "frame": 5, "track": "0",
                 "method": "NT", "source": "s", "split": "train"})
    return rows


def test_group_splits_never_share_a_video_or_identity():
    rows = group_splits(_rows(), val_fraction=0.2, test_fraction=0.2, seed=3)
    check_grouped(rows)
    splits = {r["split"] for r in rows}
    assert splits == {"train", "val", "test"}
    by_ident = {}
    for r in rows:
        by_ident.setdefault(r["identity"], set()).add(r["split"])
    assert all(len(s) == 1 for s in by_ident.values())
    # a and j are linked through video a_NT
    assert by_ident["a"] == by_ident["j"]
    leaky = [dict(r) for r in rows]
    leaky[0]["split"] = "test" if leaky[0]["split"] != "test" else "val"
    with pytest.raises(SplitLeakError, match="regroup"):
        check_grouped(leaky)


def test_select_rows_method_disjoint_keeps_reals():
    rows = _rows()
    nt = select_rows(rows, methods=["NT"])
    assert {r["method"] for r in nt} == {"original", "NT"}
    assert sum(r["label"] == 0 for r in nt) == 10


def test_augmentations_by_name_are_seeded_per_item():
    assert set(AUGMENTATIONS.names()) == {"flip", "blur", "color_jitter", "random_resized_crop",
                                          "random_erasing", "jpeg"}
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    aug = build_augmenter(AUGMENTATIONS.names(), 64, max_frames=3)
    a, b = aug(img, (0, 3, 5)), aug(img, (0, 3, 5))
    assert a.shape == img.shape and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)  # same (seed, epoch, item) -> same draw
    draws = {aug(img, (0, epoch, 5)).tobytes() for epoch in range(8)}
    assert len(draws) >= 3  # other epochs -> other draws (some may be the identity)
    frames = aug.many([img, img, img], (0, 0, 1))
    np.testing.assert_array_equal(frames[0], frames[2])  # one draw for the whole clip
    assert build_augmenter([], 64) is None


def test_gradcam_equals_class_activation_map_for_a_linear_head():
    """With a GAP + linear head, Grad-CAM reduces to CAM (Zhou et al.): relu(sum_c w_c A_c)."""
    torch.manual_seed(0)
    body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
    backbone = Backbone(body, 4, "test")
    from detectors.heads import LinearHead

    head = LinearHead(4)
    model = FrameDetector(backbone, head)
    x = torch.rand(2, 3, 16, 16)
    heat, logits = gradcam(model, x)
    with torch.no_grad():
        fmap = body(x)
        cam = torch.relu(torch.einsum("c,nchw->nhw", head.fc.weight[0], fmap))
        cam = cam / cam.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]
        torch.testing.assert_close(logits, model(x))
    torch.testing.assert_close(heat, cam)
    assert heat.shape == (2, 16, 16) and float(heat.max()) == pytest.approx(1.0)
    # an image that drives the fake logit only in its left half gets heat only there
    with torch.no_grad():
        head.fc.weight.fill_(1.0)
    x = torch.zeros(1, 3, 16, 16)
    x[..., :8] = 1.0
    body[0].weight.data.fill_(0.1)
    body[0].bias.data.fill_(-0.5)  # relu(0.1 * 27 - 0.5) > 0 only where the input is bright
    heat, _ = gradcam(model, x)
    assert heat[0, 1:-1, 1:7].min() > 0.5 and heat[0, :, 10:].max() == 0  # borders: zero pad
    face = (np.ones((16, 16, 3)) * 128).astype(np.uint8)
    blended = overlay(face, heat[0].numpy())
    assert blended.shape == face.shape and not np.array_equal(blended, face)
