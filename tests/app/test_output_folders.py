"""Issue 25 family 2: output folders. One writer per folder (a second ``analyze`` into the same
``--out`` is refused, as a second build of a shard is), no silent mixing with an earlier run
(refused unless ``--replace``), and a batch cut short by SIGINT / SIGTERM is marked incomplete
with the inputs it did not reach (``results.json`` and ``INCOMPLETE.json`` for analyze, the
build's ``INCOMPLETE.json`` for build-dataset), one line, exit 130; resuming clears the mark.
Real FF++ media; the signal is a real SIGTERM sent to this process mid-batch."""

from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path

import pytest
from _gan_setup import write_tiny_generator

import datasets_builders.build_run as build_run
import mrigan.app.analysis.pipeline as pipeline
from datasets_builders.faces import FaceDetector
from datasets_builders.mri_df import (
    BuildConfig,
    BuildSourceConfig,
    FaceDetectionConfig,
    build_mri_df,
)
from mrigan.app.cli import main as cli

pytestmark = pytest.mark.usefixtures("two_torch_threads")

FAST = ["--every", "100", "--device", "cpu", "--no-progress", "--set", "frames.max_frames=1",
        "--set", "faces.max_side=320"]


@pytest.fixture(scope="module")
def setup(ffpp_root, tmp_path_factory):
    base = tmp_path_factory.mktemp("outfolders")
    gen = write_tiny_generator(base / "gen.safetensors")
    videos = [ffpp_root / "original_sequences/youtube/c23/videos" / f"{v}.mp4"
              for v in ("519", "634")]
    videos += [ffpp_root / "manipulated_sequences/Deepfakes/c23/videos/519_515.mp4",
               ffpp_root / "manipulated_sequences/FaceSwap/c23/videos/634_660.mp4"]
    return {"base": base, "gen": gen, "videos": videos}


def _analyze(setup, out, *extra, inputs=None):
    return cli(["analyze", *map(str, inputs or setup["videos"]), "--generator",
                str(setup["gen"]), "--out", str(out), *FAST, *extra])


def test_sigterm_mid_batch_marks_results_incomplete_listing_what_was_not_analysed(
        setup, tmp_path, monkeypatch, capsys):
    calls = []

    def hashing(path):  # the 2nd input is where the operator stops the run
        calls.append(path)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return shutil_hash(path)

    shutil_hash = pipeline.sha256_file
    monkeypatch.setattr(pipeline, "sha256_file", hashing)
    out = tmp_path / "out"
    assert _analyze(setup, out) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "interrupted (SIGTERM)" in err[0], err
    res = json.loads((out / "results.json").read_text())
    assert res["complete"] is False and res["stopped"] == "interrupted (SIGTERM)"
    assert [e["path"] for e in res["inputs"]] == [str(setup["videos"][0])]
    assert res["not_analysed"] == [str(v) for v in setup["videos"][1:]]
    marker = json.loads((out / "INCOMPLETE.json").read_text())
    assert marker["not_done"] == res["not_analysed"] and marker["command"] == "analyze"
    assert not (out / ".mrigan.lock").exists()  # released
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the CLI restored it
    # a rerun into it is refused (its old case folders would sit beside new results) ...
    monkeypatch.undo()
    assert _analyze(setup, out, inputs=setup["videos"][:1]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "earlier analysis (incomplete" in err[0] and "--replace" in err[0]
    old_dir = out / res["inputs"][0]["dir"]
    assert old_dir.is_dir()
    (out / "keep.txt").write_text("the user's own file")
    # ... unless --replace: the earlier run's files go, nothing else
    assert _analyze(setup, out, "--replace", inputs=setup["videos"][2:3]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["complete"] is True and res["not_analysed"] == [] and res["stopped"] is None
    assert not (out / "INCOMPLETE.json").exists() and (out / "keep.txt").is_file()
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == [res["inputs"][0]["dir"]]


def test_a_second_analyze_into_a_folder_in_use_is_refused(setup, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    lock = out / ".mrigan.lock"  # another live run holds the folder (this process stands in)
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    assert _analyze(setup, out, inputs=setup["videos"][:1]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is writing into this folder" in err[0], err
    assert sorted(p.name for p in out.iterdir()) == [".mrigan.lock"]  # nothing written


def test_build_dataset_cut_short_is_marked_incomplete_and_resumes(setup, tmp_path, monkeypatch,
                                                                  ffpp_root):
    csv = tmp_path / "list.csv"
    orig = ffpp_root / "original_sequences/youtube/c23/videos"
    csv.write_text("path,label,original\n"
                   f"{setup['videos'][2]},fake,{orig / '519.mp4'}\n"
                   f"{setup['videos'][3]},fake,{orig / '634.mp4'}\n")
    faces = FaceDetectionConfig(device="cpu", max_side=320, batch_size=4, size=64)
    cfg = BuildConfig(out=str(tmp_path / "build"), sources=(BuildSourceConfig(kind="csv",
                      root=str(csv)),), progress=False, faces=faces, every=100, max_frames=1)
    detector = FaceDetector(device="cpu", max_side=320, batch_size=4)
    saved = []
    real_save = build_run.save_record

    def save_then_stop(out, unit, record, fp):
        if saved:
            raise KeyboardInterrupt  # Ctrl-C while the 2nd unit is being recorded
        saved.append(unit.key)
        real_save(out, unit, record, fp)

    monkeypatch.setattr(build_run, "save_record", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        build_mri_df(cfg, log=lambda _l: None, detector=detector)
    out = Path(cfg.out)
    marker = json.loads((out / "INCOMPLETE.json").read_text())
    assert marker["stopped"] == "interrupted (SIGINT)" and len(marker["not_done"]) == 1
    assert marker["not_done"][0] != saved[0]
    assert not (out / "manifest.csv").exists() and not list((out / "locks").iterdir())
    monkeypatch.undo()
    summary = build_mri_df(cfg, log=lambda _l: None, detector=detector)
    assert summary.units_resumed == 1 and summary.units_built == 1
    assert not (out / "INCOMPLETE.json").exists() and (out / "manifest.csv").is_file()
