"""``mrigan analyze --set generator.backend=onnx``: the generator runs in onnxruntime and every
face's MRI figures match the PyTorch backend's on a real FaceForensics++ frame."""

from __future__ import annotations

import json

import pytest

import mrigan
from mrigan.app.analysis import AnalyzeConfig, AnalyzeFacesConfig, AnalyzeGeneratorConfig
from mrigan.app.cli import main as cli
from mrigan.config import ConfigError

pytest.importorskip("onnxruntime")  # the optional extra mrigan[onnx]; the Makefile installs it
pytestmark = pytest.mark.usefixtures("two_torch_threads")


def test_onnx_backend_gives_the_torch_backends_figures(ff_examples, tmp_path, capsys):
    image = ff_examples / "ex_deepfakes.png"
    out = tmp_path / "out"
    assert cli(["analyze", str(image), "--out", str(out), "--device", "cpu", "--no-progress",
                "--set", "generator.backend=onnx", "--set", "faces.max_side=640"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["generator"]["backend"] == "onnx"
    assert results["config"]["generator"] == {"backend": "onnx"}
    torch_run = mrigan.analyze(image, config=AnalyzeConfig(  # ONNX runs in float32
        device="cpu", precision="fp32", faces=AnalyzeFacesConfig(max_side=640),
        generator=AnalyzeGeneratorConfig(backend="torch"))).to_dict()
    assert torch_run["generator"]["backend"] == "torch"
    (onnx_input,), (torch_input,) = results["inputs"], torch_run["inputs"]
    onnx_faces = [f for fr in onnx_input["frames"] for f in fr["faces"]]
    torch_faces = [f for fr in torch_input["frames"] for f in fr["faces"]]
    assert len(onnx_faces) == len(torch_faces) == 1
    for a, b in zip(onnx_faces, torch_faces, strict=True):
        assert list(a["box"]) == list(b["box"]) and a["mri"].keys() == b["mri"].keys()
        assert all(abs(a["mri"][k] - b["mri"][k]) <= 1e-5 for k in a["mri"]), (a["mri"], b["mri"])
        assert a["mri"]["max"] > 1e-2  # figures an ONNX graph giving zeros would miss
    assert onnx_input["verdict"] == torch_input["verdict"]


def test_unknown_backend_is_refused_before_any_work(tmp_path, capsys):
    rc = cli(["analyze", str(tmp_path), "--out", str(tmp_path / "o"),
              "--set", "generator.backend=tensorrt"])
    assert rc == 2 and "generator.backend" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="backend"):
        AnalyzeGeneratorConfig(backend="tf")
