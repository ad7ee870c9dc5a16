"""``mrigan export-onnx`` of trained frame detectors (tiny-cnn on faces, EfficientNet-B0 on MRIs):
logits and P(fake) from onnxruntime match PyTorch on real FaceForensics++ face crops and their
MRIs, at a batch size other than the traced one."""

from __future__ import annotations

import builtins
import io
import json
import os

import numpy as np
import pytest
import torch

from datasets_builders.synthetic import write_synthetic_mri_df
from detectors.config import (
    DetectorConfig,
    DetectorDataConfig,
    DetectorInputConfig,
    DetectorModelConfig,
    DetectorTrainConfig,
)
from detectors.inference import load_detector
from detectors.onnx_export import export_detector_onnx
from detectors.train import train_detector
from mrigan import perceptual
from mrigan.app.cli import main as cli
from mrigan.fileio import read_image, sha256_file
from mrigan.onnx_export import OnnxModel, read_onnx

pytest.importorskip("onnxruntime")  # the optional extra mrigan[onnx]; the Makefile installs it


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One training step each: weights that load and score (not good detectors)."""
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("det_onnx")
    root = write_synthetic_mri_df(base / "syn_df", n_faces=8, size=48)
    best = {}
    for backbone, kind in (("tiny-cnn", "plain"), ("efficientnet-b0", "mri")):
        best[backbone] = train_detector(DetectorConfig(
            name=backbone, out_dir=str(base / "runs"), model=DetectorModelConfig(backbone=backbone),
            input=DetectorInputConfig(name=kind, manifest_mri=kind == "mri"),
            data=DetectorDataConfig(root=str(root), image_size=48, workers=0),
            train=DetectorTrainConfig(max_steps=1, batch_size=4, device="cpu", precision="fp32",
                                      augment=("flip",))), log=lambda *a: None).best_checkpoint
    return base, best


@pytest.fixture(scope="module")
def real_inputs(ff_examples):
    """5 face crops (original and Deepfakes frames, several sizes) and their MRIs."""
    real = read_image(ff_examples / "ex_original.png")
    fake = read_image(ff_examples / "ex_deepfakes.png")
    boxes = [(80, 208, 282, 410), (70, 201, 290, 407), (92, 179, 303, 391)]
    faces = [img[t:b, lft:r] for img in (real, fake) for t, b, lft, r in boxes][:5]
    mris = [perceptual.mri_map_np(real[t:b, lft:r], fake[t:b, lft:r]) for t, b, lft, r in boxes]
    return faces, mris + mris[:2]


@pytest.mark.parametrize("backbone", ["tiny-cnn", "efficientnet-b0"])
def test_detector_onnx_matches_torch_on_real_faces(trained, real_inputs, backbone,
                                                    one_torch_thread):
    base, best = trained
    out = base / f"{backbone}.onnx"
    assert cli(["export-onnx", str(best[backbone]), "--out", str(out)]) == 0
    det = load_detector(best[backbone], "cpu", precision="fp32")
    faces, mris = real_inputs
    images = mris if det.input_name == "mri" else faces
    x = det._batch(images)  # what predict_proba feeds the model: resized, in [0, 1]
    data, header = read_onnx(out)
    assert header["input_kind"] == det.input_name and header["image_size"] == 48
    got = OnnxModel(data, header=header).run(x)  # a batch of 5; traced at 2
    with torch.no_grad():
        logits = det.model(x).numpy()
    probs = det.predict_proba(faces=faces, mris=mris)
    assert got["logit"].shape == got["p_fake"].shape == (5,)
    assert np.abs(got["logit"] - logits).max() <= 1e-4
    assert np.abs(got["p_fake"] - probs).max() <= 1e-4
    # barely trained, the detectors score these faces within ~1e-3 of each other: the graph
    # must follow those differences too, not give a constant near them
    assert np.abs(got["logit"] - logits).max() <= 0.01 * np.ptp(logits)
    sidecar = json.loads(out.with_name(out.name + ".json").read_text())
    assert sidecar["config"]["model"]["backbone"] == backbone
    assert sidecar["onnx"]["parity_max_abs_diff_vs_torch"] <= 1e-4


@pytest.fixture
def reads_of(monkeypatch):
    """Counts, per file, every ``open`` (builtins and io: torch.load, hashing, Path.read_bytes)
    and every ``torch.load``; ``reads_of(path)`` -> (opens, torch.load calls) of that file."""
    opens, loads = [], []
    real_open, real_io_open, real_load = builtins.open, io.open, torch.load

    def name(file) -> str | None:
        return os.path.realpath(file) if isinstance(file, (str, os.PathLike)) else None

    def counting_open(file, *args, **kwargs):
        opens.append(name(file))
        return real_open(file, *args, **kwargs)

    def counting_io_open(file, *args, **kwargs):
        opens.append(name(file))
        return real_io_open(file, *args, **kwargs)

    def counting_load(f, *args, **kwargs):
        loads.append(f)
        return real_load(f, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    monkeypatch.setattr(io, "open", counting_io_open)
    monkeypatch.setattr(torch, "load", counting_load)

    def count(path) -> tuple[int, int]:
        return opens.count(os.path.realpath(path)), len(loads)

    return count


def test_export_reads_the_detector_checkpoint_once(trained, reads_of, one_torch_thread):
    """``mrigan export-onnx`` tells a detector from a generator, loads the detector and hashes
    its file for the sidecar from one read of the checkpoint; the export still passes its parity
    check and the sidecar's SHA-256 is the file's."""
    base, best = trained
    ckpt = best["tiny-cnn"]
    expected = {"path": str(ckpt), "sha256": sha256_file(ckpt)}
    start = reads_of(ckpt)
    out = base / "once.onnx"
    assert cli(["export-onnx", str(ckpt), "--out", str(out)]) == 0
    opens, loads = reads_of(ckpt)
    assert (opens - start[0], loads - start[1]) == (1, 1)  # opened once, deserialised once
    sidecar = json.loads(out.with_name(out.name + ".json").read_text())
    assert sidecar["onnx"]["parity_max_abs_diff_vs_torch"] <= 1e-4
    assert sidecar["exported_from"] == expected
    # the Python API given a path reads it once too
    export_detector_onnx(ckpt, base / "api.onnx")
    assert reads_of(ckpt) == (opens + 1, loads + 1)
