"""Issue 25 family 5: where the machine, not the input, fails - a full disk in analyze,
build-dataset (PNGs saved by the background saver) and train-gan (torch's "unexpected pos"), a
file name that is not UTF-8 - the command ends with one line naming the file, never a
traceback, and what was finished stays marked (an analysis' ``INCOMPLETE.json``). Real FF++
media; the full disk is an ``OSError(ENOSPC)`` raised where the write happens."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from _gan_setup import write_tiny_generator

import mrigan.app.analysis.outputs as analysis_outputs
import mrigan.fileio as fileio
from mrigan.app.cli import main as cli

pytestmark = pytest.mark.usefixtures("two_torch_threads")

FAST = ["--every", "100", "--device", "cpu", "--no-progress", "--set", "frames.max_frames=1",
        "--set", "faces.max_side=320"]


def _enospc(path):
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


@pytest.fixture(scope="module")
def gen(tmp_path_factory):
    return write_tiny_generator(tmp_path_factory.mktemp("gen") / "gen.safetensors")


def test_a_file_name_that_is_not_utf8_is_analysed_and_reported(ff_examples, gen, tmp_path,
                                                               capsys):
    case = tmp_path / "case"
    case.mkdir()
    odd = os.fsdecode(bytes(case) + b"/face_\xff\xfe.png")  # Latin-1 bytes, not UTF-8
    shutil.copy(ff_examples / "ex_deepfakes.png", odd)
    out = tmp_path / "out"
    assert cli(["analyze", str(case), "--generator", str(gen), "--out", str(out), *FAST]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert "face_\\xff\\xfe.png: " in captured.out
    res = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert res["inputs"][0]["status"] == "analysed" and res["complete"] is True
    page = (out / "report.html").read_text(encoding="utf-8")  # valid UTF-8
    assert "face_\\xff\\xfe.png" in page


def test_a_full_disk_in_analyze_is_one_line_and_the_run_stays_marked(ffpp_root, gen, tmp_path,
                                                                      monkeypatch, capsys):
    real_write = analysis_outputs.atomic_write_text

    def full_disk(path, text):
        if Path(path).name == "results.json":
            raise _enospc(path)
        real_write(path, text)

    monkeypatch.setattr(analysis_outputs, "atomic_write_text", full_disk)
    video = ffpp_root / "original_sequences/youtube/c23/videos/519.mp4"
    out = tmp_path / "out"
    assert cli(["analyze", str(video), "--generator", str(gen), "--out", str(out), *FAST]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0] and "results.json" in err[0], err
    marker = json.loads((out / "INCOMPLETE.json").read_text())
    assert marker["stopped"].startswith("OSError") and marker["not_done"] == [str(video)]
    assert not (out / ".mrigan.lock").exists()


def test_a_full_disk_in_build_dataset_is_one_line(ffpp_root, tmp_path, monkeypatch, capsys):
    real_write = fileio.atomic_write_bytes

    def full_disk(path, data):
        if str(path).endswith(".png"):  # the background saver's PNGs
            raise _enospc(path)
        real_write(path, data)

    monkeypatch.setattr(fileio, "atomic_write_bytes", full_disk)
    orig = ffpp_root / "original_sequences/youtube/c23/videos"
    csv = tmp_path / "list.csv"
    csv.write_text("path,label,original\n"
                   f"{ffpp_root / 'manipulated_sequences/Deepfakes/c23/videos/519_515.mp4'},fake,"
                   f"{orig / '519.mp4'}\n")
    out = tmp_path / "build"
    code = cli(["build-dataset", "--csv", str(csv), "--out", str(out), "--every", "100",
                "--size", "64", "--max-frames", "1", "--no-progress", "--set", "faces.device=cpu",
                "--set", "faces.max_side=320"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "No space left on device" in err[0], err
    assert ".png" in err[0]
    assert json.loads((out / "INCOMPLETE.json").read_text())["stopped"].startswith("OSError")


def test_a_full_disk_while_saving_a_checkpoint_is_one_line(tmp_path, monkeypatch, capsys):
    from datasets_builders.synthetic import write_synthetic_mri_df
    from mrigan.config import PROJECT_ROOT

    data = write_synthetic_mri_df(tmp_path / "mri_df", n_faces=6, size=32)

    def unexpected_pos(*args, **kwargs):  # what torch's stream writer says on a full disk
        raise RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter "
                           "failed writing file data/0: file write failed; unexpected pos 64")

    monkeypatch.setattr(torch, "save", unexpected_pos)
    code = cli(["train-gan", "--config", str(PROJECT_ROOT / "configs/mri_gan_cpu.yaml"),
                "--set", f"data.root={data}", "--set", f"out_dir={tmp_path}/runs",
                "--set", "model.image_size=32", "--set", "model.ngf=4", "--set", "model.ndf=4",
                "--set", "train.batch_size=4", "--set", "train.max_steps=1",
                "--set", "data.eval_samples=4"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("mrigan train-gan: error: ") and ".pt: could not write" in last
    assert "bytes free" in last and "--resume" in last


def test_an_output_folder_that_cannot_be_written_is_one_line(ffpp_root, gen, tmp_path,
                                                             monkeypatch, capsys):
    real_open = os.open

    def read_only(path, *args, **kwargs):  # as on a read-only mount (root ignores chmod)
        if str(path).startswith(str(tmp_path / "ro")):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    video = ffpp_root / "original_sequences/youtube/c23/videos/519.mp4"
    code = cli(["analyze", str(video), "--generator", str(gen), "--out", str(tmp_path / "ro"),
                *FAST])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "Read-only file system" in err[0], err
    assert str(tmp_path / "ro") in err[0]
