"""The output-location guard on real folders (shared media is only read, never written)."""

from __future__ import annotations

import pytest

from mrigan.errors import MriganError
from mrigan.outputs import OutputLocationError, check_output_dir


def test_output_inside_an_input_folder_or_beside_an_input_file_is_refused(ffpp_root, tmp_path):
    video = ffpp_root / "original_sequences/youtube/c23/videos/519.mp4"
    for out in (video.parent, video.parent / "reports", ffpp_root / "x"):
        with pytest.raises(OutputLocationError, match="inside the input folder") as info:
            check_output_dir(out, [video, ffpp_root])
        assert isinstance(info.value, MriganError) and str(out) in str(info.value)
    assert not (video.parent / "reports").exists()
    assert check_output_dir(tmp_path / "out", [video]) == (tmp_path / "out").resolve()


def test_output_that_holds_an_input_or_is_a_file_is_refused(tmp_path):
    (tmp_path / "in").mkdir()
    image = tmp_path / "in" / "a.png"
    image.write_bytes(b"x")
    with pytest.raises(OutputLocationError, match="holds no input"):
        check_output_dir(tmp_path, [image.parent / "a.png", tmp_path / "elsewhere.png"])
    with pytest.raises(OutputLocationError, match="a file of that name exists"):
        check_output_dir(image, [tmp_path / "other" / "b.png"])


def test_batch_run_marks_a_cut_run_and_leaves_nothing_for_a_bad_input(tmp_path):
    import json

    from mrigan.outputs import BatchRun

    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt), BatchRun(out, "mri", ["a", "b", "c"]) as batch:
        assert json.loads((out / "INCOMPLETE.json").read_text())["not_done"] == ["a", "b", "c"]
        batch.done("a")
        raise KeyboardInterrupt
    marker = json.loads((out / "INCOMPLETE.json").read_text())
    assert marker["not_done"] == ["b", "c"] and marker["stopped"] == "interrupted (SIGINT)"
    assert not (out / ".mrigan.lock").exists()
    with BatchRun(out, "mri", ["b", "c"]) as batch:  # the rerun finishes: the mark goes
        batch.done("b")
        batch.done("c")
    assert sorted(p.name for p in out.iterdir()) == []
    fresh = tmp_path / "fresh"
    with pytest.raises(MriganError), BatchRun(fresh, "mri", ["a"]):
        raise MriganError("a bad first input")
    assert not fresh.exists()  # a bad input before any work leaves no folder behind


def test_a_refused_rerun_puts_back_the_marker_of_the_run_cut_short(tmp_path):
    from mrigan.outputs import BatchRun

    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt), BatchRun(out, "build", ["a", "b"]):
        raise KeyboardInterrupt
    cut = (out / "INCOMPLETE.json").read_bytes()
    with pytest.raises(MriganError), BatchRun(out, "build", ["a", "b"]):
        raise MriganError("other settings")  # refused before any work
    assert (out / "INCOMPLETE.json").read_bytes() == cut
