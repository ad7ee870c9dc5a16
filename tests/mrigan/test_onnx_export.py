"""ONNX export of the generator (``mrigan export-onnx``, ``MRIGenerator.load(backend="onnx")``):
parity with PyTorch through onnxruntime on real FaceForensics++ face crops, the model card
carried along, and the files it refuses."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from mrigan.app.cli import main as cli
from mrigan.checkpoint import CheckpointError
from mrigan.fileio import read_image
from mrigan.inference import MRIGenerator
from mrigan.model_card import DEFAULT_GENERATOR
from mrigan.onnx_export import MissingExtraError, OnnxModel, read_onnx, require

onnx = pytest.importorskip("onnx")  # the optional extra mrigan[onnx]; the Makefile installs it


@pytest.fixture(scope="module")
def faces(ff_examples):
    """Real face crops of 4 sizes (the generator resizes them to 128 and back), from the
    original frame and its Deepfakes fake."""
    crops = []
    for name in ("ex_original.png", "ex_deepfakes.png"):
        frame = read_image(ff_examples / name)
        crops += [frame[80:208, 282:410], frame[70:201, 290:407]]
    return crops


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The shipped default generator (fp16 safetensors with a model card) through the CLI."""
    out = tmp_path_factory.mktemp("onnx") / "gen.onnx"
    with_one_thread = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rc = cli(["export-onnx", str(DEFAULT_GENERATOR), "--out", str(out)])
    finally:
        torch.set_num_threads(with_one_thread)
    assert rc == 0
    return out


def test_onnx_generator_matches_torch_on_real_faces(exported, faces, one_torch_thread):
    torch_gen = MRIGenerator.load(DEFAULT_GENERATOR, "cpu", backend="torch")
    onnx_gen = MRIGenerator.load(exported)  # auto: an .onnx file runs in onnxruntime
    assert onnx_gen.backend == "onnx" and torch_gen.backend == "torch"
    assert onnx_gen.image_size == torch_gen.image_size == 128
    # batch sizes 1 and 3 (the graph was traced at 2: the batch axis is dynamic)
    onnx_gen.batch_size = 3
    got, ref = onnx_gen.predict(faces), torch_gen.predict(faces)
    for g, r, face in zip(got, ref, faces, strict=True):
        assert g.shape == face.shape and g.dtype == np.float32
        assert np.abs(g - r).max() <= 1e-4
        assert r.max() > 10 * 1e-4  # a map that a zero or constant output would miss
    single = onnx_gen.predict(faces[0])
    assert np.abs(single - ref[0]).max() <= 1e-4
    # in memory: .safetensors weights exported on load
    in_memory = MRIGenerator.load(DEFAULT_GENERATOR, backend="onnx")
    assert in_memory.backend == "onnx"
    assert np.abs(in_memory.predict(faces[1]) - ref[1]).max() <= 1e-4


def test_model_card_and_provenance_go_along(exported, tmp_path):
    shipped = json.loads(DEFAULT_GENERATOR.with_suffix(".json").read_text())
    sidecar = json.loads(exported.with_name("gen.onnx.json").read_text())
    assert sidecar["format"] == "mrigan-generator-onnx/1"
    assert sidecar["model_card"] == shipped["model_card"]
    assert sidecar["source_sha256"] == shipped["source_sha256"]  # the training checkpoint's
    assert sidecar["onnx"]["opset"] == 17 and sidecar["onnx"]["parity_max_abs_diff_vs_torch"] <= 1e-4
    assert len(sidecar["exported_from"]["sha256"]) == 64
    # the .onnx alone (no sidecar) still knows its architecture and card
    lone = tmp_path / "lone.onnx"
    shutil.copy(exported, lone)
    gen = MRIGenerator.load(lone)
    assert gen.architecture == shipped["architecture"]
    assert gen.metadata["model_card"] == shipped["model_card"]
    graph = onnx.load(str(lone)).graph
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_export_refuses_to_replace_files_unless_asked(exported, capsys):
    before = exported.read_bytes()
    assert cli(["export-onnx", str(DEFAULT_GENERATOR), "--out", str(exported)]) == 2
    err = capsys.readouterr().err.strip()
    assert "exists; pass --overwrite" in err and len(err.splitlines()) == 1
    assert exported.read_bytes() == before
    wrong = exported.with_suffix(".bin")
    assert cli(["export-onnx", str(DEFAULT_GENERATOR), "--out", str(wrong)]) == 2
    assert "must end in .onnx" in capsys.readouterr().err and not wrong.exists()


def test_bad_onnx_files_are_one_line_errors(exported, tmp_path):
    with pytest.raises(CheckpointError, match="use backend='onnx'"):
        MRIGenerator.load(exported, backend="torch")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(exported.read_bytes()[:5000])  # an interrupted copy
    with pytest.raises(CheckpointError, match="not a valid ONNX model") as info:
        MRIGenerator.load(broken)
    assert str(broken) in info.value.one_line()
    model = onnx.load(str(exported))
    weight = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    arr = onnx.numpy_helper.to_array(weight).copy()
    arr.flat[0] = np.nan
    weight.CopyFrom(onnx.numpy_helper.from_array(arr, weight.name))
    nan_file = tmp_path / "nan.onnx"
    onnx.save(model, str(nan_file))
    with pytest.raises(CheckpointError, match="NaN or inf"):
        read_onnx(nan_file)
    # an ONNX model that is not an exported generator
    plain = tmp_path / "plain.onnx"
    model = onnx.load(str(exported))
    model.ClearField("metadata_props")
    onnx.save(model, str(plain))
    with pytest.raises(CheckpointError, match="not an exported MRI-GAN generator"):
        MRIGenerator.load(plain)


def test_missing_extra_names_it(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "onnxruntime", None)
    with pytest.raises(MissingExtraError, match=r"mrigan\[onnx\]"):
        require("onnxruntime")
    with pytest.raises(MissingExtraError, match=r"mrigan\[onnx\]"):
        OnnxModel(b"")
