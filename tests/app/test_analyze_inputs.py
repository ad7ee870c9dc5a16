"""Which files `mrigan analyze` takes from its arguments, and where it refuses to write."""

from __future__ import annotations

from pathlib import Path

import pytest

from mrigan.app.analysis import discover_inputs
from mrigan.outputs import OutputLocationError, check_output_dir


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_folders_are_searched_for_known_media_only(tmp_path):
    case = tmp_path / "case"
    a = _touch(case / "b_clip.MP4")
    b = _touch(case / "sub" / "a_still.jpeg")
    _touch(case / "notes.txt")
    _touch(case / ".hidden.mp4")
    _touch(case / ".cache" / "x.png")
    odd = _touch(tmp_path / "exhibit_7.bin")  # named explicitly: taken, as a video
    items = discover_inputs([case, odd, a, tmp_path / "missing.mp4"])
    assert [(i.path, i.kind) for i in items] == [
        (a, "video"), (b, "image"), (odd, "video"), (tmp_path / "missing.mp4", "missing")]


def test_output_folder_may_not_be_an_input_folder_or_inside_one(tmp_path):
    case = tmp_path / "case"
    video = _touch(case / "v.mp4")
    for bad in (case, case / "report", tmp_path / "case" / "deep" / "er"):
        with pytest.raises(OutputLocationError, match="inside the input folder"):
            check_output_dir(bad, [case])
    with pytest.raises(OutputLocationError):  # a file's folder is guarded too
        check_output_dir(case / "out", [video])
    assert check_output_dir(tmp_path / "reports", [case, video]) == (tmp_path / "reports").resolve()
