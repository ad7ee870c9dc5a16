"""DA-CLIP with a tiny randomly initialised open_clip CLIP: forward, Eq. 7 loss and backward,
top-K description retrieval, local-only weights, the descriptions CSV."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("open_clip", reason="DA-CLIP needs the optional extra: pip install 'mrigan[clip]'")

from safetensors.torch import save_file  # noqa: E402

from detectors.backbones import WeightsError  # noqa: E402
from detectors.realism import losses  # noqa: E402
from detectors.realism.da_clip import (  # noqa: E402
    DaClip,
    DescriptionIndex,
    DescriptionsError,
    build_clip,
    build_tokenizer,
    read_descriptions,
    tokenize_descriptions,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = {"embed_dim": 16,
        "vision_cfg": {"layers": 1, "width": 32, "patch_size": 8, "image_size": 32, "head_width": 16},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}

DESCRIPTIONS = """video,description
a.mp4,the mouth is blurry
a.mp4,teeth flicker when speaking
b.mp4,looks completely natural
c.mp4,face boundary is visible
c.mp4,skin colour differs from the neck
c.mp4,
"""


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    return DaClip(build_clip(TINY), TINY["embed_dim"]), build_tokenizer(16)


def test_descriptions_csv(tmp_path):
    path = tmp_path / "desc.csv"
    path.write_text(DESCRIPTIONS)
    desc = read_descriptions(path)
    assert desc == {"a.mp4": ["the mouth is blurry", "teeth flicker when speaking"],
                    "b.mp4": ["looks completely natural"],
                    "c.mp4": ["face boundary is visible", "skin colour differs from the neck"]}
    (tmp_path / "bad.csv").write_text("name,text\nx,y\n")
    with pytest.raises(DescriptionsError, match="video,description"):
        read_descriptions(tmp_path / "bad.csv")
    with pytest.raises(DescriptionsError, match="not found"):
        read_descriptions(tmp_path / "missing.csv")


def test_forward_loss_is_eq_7_and_backward_reaches_both_towers(tiny, tmp_path):
    model, tok = tiny
    frames = torch.rand(3, 4, 3, 32, 32)
    tokens, mask = tokenize_descriptions(tok, [["blurry mouth", "flicker"], ["natural"],
                                               ["visible boundary", "colour", "eyes"]])
    assert tokens.shape == (3, 3, 16) and mask.tolist() == [[True, True, False], [True, False, False],
                                                          [True, True, True]]
    mos = torch.tensor([2.1, 4.6, 1.4])
    out = model(frames)
    assert out.shape == (3,) and torch.isfinite(out).all()
    parts = model.loss(frames, tokens, mask, mos)
    # reference: pooled representations by hand, cosine in NumPy, DREAM Eq. 5 by name
    with torch.no_grad():
        f = model.clip.encode_image(frames.flatten(0, 1)).view(3, 4, -1).numpy()
        x = f.mean(1) + f.std(1)
        e = model.clip.encode_text(tokens.flatten(0, 1)).view(3, 3, -1).numpy()
        t = np.stack([e[i, mask[i].numpy()].mean(0) for i in range(3)])
        cos = (x * t).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(t, axis=1)
        reg = losses.build_loss("norm_in_norm_l1 + kl_pred_target")
        w, b = model.regressor.weight.numpy()[0], float(model.regressor.bias)
        visual = reg(torch.tensor(x @ w + b), mos)
        textual = reg(torch.tensor(t @ w + b), mos)
    got = {k: float(v.detach()) for k, v in parts.items()}
    assert got["sim"] == pytest.approx(1 - cos.mean(), abs=1e-5)
    assert got["visual"] == pytest.approx(float(visual), abs=1e-4)
    assert got["textual"] == pytest.approx(float(textual), abs=1e-4)
    assert got["total"] == pytest.approx(
        float(visual) + float(textual) + 0.2 * (1 - cos.mean()), abs=1e-4)
    parts["total"].backward()
    for name in ("visual.conv1.weight", "token_embedding.weight"):
        grad = dict(model.clip.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert model.regressor.weight.grad.abs().sum() > 0


def test_top_k_retrieval_matches_cosine_ranking(tiny, tmp_path):
    model, tok = tiny
    path = tmp_path / "desc.csv"
    path.write_text(DESCRIPTIONS)
    desc = read_descriptions(path)
    index = DescriptionIndex.build(model, tok, desc, batch_size=2)
    frames = torch.rand(2, 3, 3, 32, 32)
    got = index.retrieve(model, frames, k=2)
    with torch.no_grad():
        q = model.video_embedding(frames).numpy()
        texts = np.stack([model.text_embedding(*tokenize_descriptions(tok, [s])).numpy()[0]
                          for s in desc.values()])
    cos = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (
        texts / np.linalg.norm(texts, axis=1, keepdims=True)).T
    videos = list(desc)
    for i, hits in enumerate(got):
        order = np.argsort(-cos[i])[:2]
        assert [h.video for h in hits] == [videos[j] for j in order]
        assert [h.similarity for h in hits] == pytest.approx(cos[i][order].tolist(), abs=1e-5)
        assert all(h.sentences == desc[h.video] for h in hits)
    assert len(index.retrieve(model, frames, k=10)[0]) == 3


def test_weights_from_a_local_file_only(tiny, tmp_path):
    model, _ = tiny
    path = tmp_path / "clip.safetensors"
    save_file({k: v.contiguous() for k, v in model.clip.state_dict().items()}, str(path))
    again = build_clip(TINY, weights=path)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(again.encode_image(x), model.clip.encode_image(x))
    with pytest.raises(WeightsError, match="not found"):
        build_clip(TINY, weights=tmp_path / "nope.safetensors")
    save_file({"something.else": torch.zeros(2)}, str(tmp_path / "wrong.safetensors"))
    with pytest.raises(WeightsError, match="does not fit"):
        build_clip(TINY, weights=tmp_path / "wrong.safetensors")


def test_weights_of_another_shape_are_refused_in_one_error(tiny, tmp_path):
    """Same keys, other widths (a checkpoint of a bigger CLIP): a WeightsError naming the file,
    not torch's RuntimeError from load_state_dict."""
    bigger = {**TINY, "embed_dim": 24}
    state = build_clip(bigger).state_dict()
    path = tmp_path / "bigger.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    with pytest.raises(WeightsError, match="of another shape") as info:
        build_clip(TINY, weights=path)
    assert str(path) in str(info.value)
