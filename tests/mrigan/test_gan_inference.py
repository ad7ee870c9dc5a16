"""MRIGenerator: export/load round trips and every accepted input form."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch
from _gan_setup import tiny_config
from PIL import Image

import mrigan
from datasets_builders.synthetic import demo_faces, write_synthetic_mri_df
from mrigan.checkpoint import CheckpointError, load_checkpoint
from mrigan.errors import InputValueError
from mrigan.fileio import portable_path
from mrigan.inference import MRIGenerator, export_generator, sidecar_path
from mrigan.model_card import DEFAULT_GENERATOR
from mrigan.models import generator_from_architecture
from mrigan.train import train_gan


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A briefly trained 32 px generator: its best checkpoint and its exported files."""
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("gan_inference")
    data = write_synthetic_mri_df(tmp / "mri_df", n_faces=8, size=32)
    result = train_gan(tiny_config(data, tmp, "run", max_steps=3, eval_every=3))
    weights, sidecar = export_generator(result.best_checkpoint, tmp / "gen.safetensors")
    return result.best_checkpoint, weights, sidecar


@pytest.fixture(scope="module")
def reference(trained):
    """The checkpoint's generator, built directly (eval mode), to compare against."""
    ckpt = load_checkpoint(trained[0])
    net = generator_from_architecture(ckpt["architecture"]["generator"])
    net.load_state_dict(ckpt["generator"])
    return net.eval()


@pytest.fixture(scope="module")
def faces32():
    return np.stack(demo_faces(32)[:5])  # 5x32x32x3 uint8


def test_export_writes_weights_and_sidecar(trained):
    ckpt_path, weights, sidecar = trained
    meta = json.loads(sidecar.read_text())
    assert meta["format"] == "mrigan-generator/1"
    assert meta["architecture"] == {"name": "mrigan", "image_size": 32, "in_channels": 3,
                                    "out_channels": 3, "ngf": 4, "dropout": 0.5}
    assert meta["step"] == 3 and meta["held_out_eval_at_step"]["step"] == 3
    assert len(meta["source_sha256"]) == 64 and meta["training_config"]["model"]["ngf"] == 4
    from safetensors.torch import load_file

    ckpt = load_checkpoint(ckpt_path)
    tensors = load_file(str(weights))
    assert tensors.keys() == ckpt["generator"].keys()
    assert all(torch.equal(tensors[k], ckpt["generator"][k]) for k in tensors)


def _absolute_paths(obj) -> list[str]:
    if isinstance(obj, dict):
        return [p for v in obj.values() for p in _absolute_paths(v)]
    if isinstance(obj, list):
        return [p for v in obj for p in _absolute_paths(v)]
    return [obj] if isinstance(obj, str) and os.path.isabs(obj) else []


def test_exported_sidecar_names_no_folder_of_the_training_machine(trained):
    ckpt_path, _, sidecar = trained
    text = sidecar.read_text()
    meta = json.loads(text)
    tmp = ckpt_path.parents[2]  # the module's tmp folder: out_dir, and the data beside it
    assert not _absolute_paths(meta) and str(tmp) not in text
    assert meta["source_checkpoint"] == "checkpoints/best.pt"  # relative to the run folder
    assert meta["training_config"]["out_dir"] == ".."
    assert meta["training_config"]["data"]["root"] == os.path.join("..", "mri_df")
    # a path far from the run is hashed, not recorded
    far = portable_path("/srv/a/b/c/d/data", "/home/u/runs/x")
    assert far.startswith("sha256:") and "srv" not in far
    assert portable_path("relative/data", "/home/u/runs/x") == "relative/data"
    shipped = json.loads(sidecar_path(DEFAULT_GENERATOR).read_text(encoding="utf-8"))
    assert not _absolute_paths(shipped)


def test_loaded_generator_equals_the_trained_one(trained, reference, faces32):
    x = torch.from_numpy(faces32).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        expected = reference(x)
    for source in (trained[1], trained[0]):  # exported .safetensors and the raw checkpoint
        gen = MRIGenerator.load(source, device="cpu")
        assert gen.image_size == 32 and gen.architecture["name"] == "mrigan"
        assert torch.equal(gen.predict_tensor(x), expected)


def test_safetensors_header_alone_is_enough(trained, tmp_path, faces32):
    lone = tmp_path / "lone.safetensors"
    shutil.copy(trained[1], lone)  # no sidecar beside it
    a = MRIGenerator.load(lone, "cpu").predict(faces32)
    b = MRIGenerator.load(trained[1], "cpu").predict(faces32)
    np.testing.assert_array_equal(a, b)


def test_every_input_form_gives_the_same_mri(trained, faces32):
    gen = mrigan.MRIGenerator.load(trained[1], device="auto")  # lazily exposed at top level
    batch = gen.predict(faces32)
    assert isinstance(batch, np.ndarray) and batch.dtype == np.float32
    assert batch.shape == faces32.shape and 0.0 <= batch.min() and batch.max() <= 1.0

    single = gen.predict(faces32[1])
    np.testing.assert_allclose(single, batch[1], atol=1e-6)
    pil = gen.predict(Image.fromarray(faces32[2]))
    np.testing.assert_allclose(pil, batch[2], atol=1e-6)
    as_float = gen.predict(faces32.astype(np.float32) / 255)
    np.testing.assert_allclose(as_float, batch, atol=1e-6)

    t = torch.from_numpy(faces32).permute(0, 3, 1, 2)  # uint8 (N, 3, H, W)
    out_t = gen.predict(t)
    assert isinstance(out_t, torch.Tensor) and out_t.shape == (5, 3, 32, 32)
    np.testing.assert_allclose(out_t.permute(0, 2, 3, 1).numpy(), batch, atol=1e-6)
    out_one = gen.predict(t[3].float() / 255)
    assert out_one.shape == (3, 32, 32)
    np.testing.assert_allclose(out_one.permute(1, 2, 0).numpy(), batch[3], atol=1e-6)

    listed = gen.predict([faces32[0], Image.fromarray(faces32[4]), t[1]])
    assert isinstance(listed, list) and len(listed) == 3
    np.testing.assert_allclose(listed[0], batch[0], atol=1e-6)
    np.testing.assert_allclose(listed[1], batch[4], atol=1e-6)
    assert isinstance(listed[2], torch.Tensor)
    np.testing.assert_allclose(listed[2].permute(1, 2, 0).numpy(), batch[1], atol=1e-6)


def test_other_sizes_are_resized_to_the_generator_and_back(trained):
    gen = MRIGenerator.load(trained[1], "cpu", batch_size=2)
    big = demo_faces(64)[:3]
    out = gen.predict(big)  # a list of 64 px faces
    assert [o.shape for o in out] == [(64, 64, 3)] * 3
    # the 64 px MRI is the 32 px MRI of the downsized face, upsampled
    small = torch.nn.functional.interpolate(
        torch.from_numpy(np.stack(big)).permute(0, 3, 1, 2).float() / 255, size=(32, 32),
        mode="bilinear", antialias=True, align_corners=False)
    at32 = gen.predict_tensor(small)
    down = torch.nn.functional.avg_pool2d(torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2), 2)
    assert float((down - at32).abs().mean()) < 0.02
    mixed = gen.predict([demo_faces(48)[0], demo_faces(32)[1]])
    assert [m.shape for m in mixed] == [(48, 48, 3), (32, 32, 3)]


def test_bad_inputs_are_clear_errors(trained):
    gen = MRIGenerator.load(trained[1], "cpu")
    with pytest.raises(ValueError, match="HxWx3"):
        gen.predict(np.zeros((32, 32), np.uint8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        gen.predict(np.full((32, 32, 3), 200.0, np.float32))
    with pytest.raises(TypeError, match="numpy array, PIL image or tensor"):
        gen.predict("face.png")
    with pytest.raises(ValueError, match="3-channel"):
        gen.predict(torch.zeros(1, 1, 32, 32))


def test_reference_code_checkpoint_loads_with_its_architecture(tmp_path, faces32):
    """A paper-style ``{'generator_state_dict': {'down1.model.0.weight': ...}}`` .pt file."""
    torch.manual_seed(0)
    arch = {"name": "mrigan", "image_size": 32, "ngf": 4}
    net = generator_from_architecture(arch).eval()
    paper_names = {}
    for k, v in net.state_dict().items():
        head, idx, rest = k.split(".", 2) if k.startswith(("downs.", "ups.")) else ("", "", k)
        paper_names[f"{head[:-1]}{int(idx) + 1}.model.{rest}" if head else rest] = v
    path = tmp_path / "checkpoint.chkpt"
    torch.save({"epoch": 3, "generator_state_dict": paper_names}, path)
    with pytest.raises(CheckpointError, match="architecture"):
        MRIGenerator.load(path, "cpu")
    gen = MRIGenerator.load(path, "cpu", architecture=arch)
    x = torch.from_numpy(faces32).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        assert torch.equal(gen.predict_tensor(x), net(x))


# --- validation before anything is built (issue 15 families 4, 5, 9) --------------------------


def test_predict_refuses_nan_faces_which_pass_a_plain_range_check(trained):
    gen = MRIGenerator.load(trained[1], "cpu")
    face = np.full((32, 32, 3), 0.5, np.float32)
    face[4, 4, 1] = np.nan
    with pytest.raises(InputValueError, match="1 non-finite"):
        gen.predict(face)
    with pytest.raises(InputValueError, match="non-finite"):
        gen.predict(torch.from_numpy(face).permute(2, 0, 1))


def test_weights_with_nan_are_refused_at_load_naming_the_file(trained, tmp_path):
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(trained[1]))
    first = sorted(k for k, v in tensors.items() if v.is_floating_point())[0]
    tensors[first] = tensors[first].clone()
    tensors[first].view(-1)[0] = float("nan")
    bad = tmp_path / "nan.safetensors"
    save_file(tensors, str(bad))
    shutil.copy(trained[2], tmp_path / "nan.json")
    with pytest.raises(CheckpointError, match=r"nan\.safetensors: 1 weight tensor\(s\) hold NaN"):
        MRIGenerator.load(bad, "cpu")


def test_a_generator_that_outputs_nan_is_an_error_not_an_mri(trained, faces32):
    gen = MRIGenerator.load(trained[1], "cpu")
    with torch.no_grad():
        next(gen.net.parameters()).fill_(float("nan"))
    with pytest.raises(InputValueError, match="produced non-finite MRIs"):
        gen.predict(faces32)


@pytest.mark.parametrize("change, message", [
    ({"ngf": 100000}, r"ngf=100000 must be an integer in \[1, 256\]"),
    ({"image_size": 10**9}, "image_size=1000000000 must be an integer"),
    ({"image_size": 48}, "cannot be built: image_size must be a power of two"),
    ({"in_channels": 1}, r"in_channels=1 must be an integer in \[3, 3\]"),
    ({"name": None}, "architecture name None is not a known generator"),
])
def test_explicit_architectures_are_validated_too(trained, change, message):
    arch = {"name": "mrigan", "image_size": 32, "ngf": 4, **change}
    with pytest.raises(CheckpointError, match=message):
        MRIGenerator.load(trained[0], "cpu", architecture=arch)


def test_export_refuses_a_folder_and_a_wrong_suffix(trained, tmp_path):
    with pytest.raises(CheckpointError, match="must end in .safetensors"):
        export_generator(trained[0], tmp_path / "gen.pt")
    (tmp_path / "dir.safetensors").mkdir()
    with pytest.raises(CheckpointError, match="is a folder"):
        export_generator(trained[0], tmp_path / "dir.safetensors")
