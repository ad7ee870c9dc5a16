"""The builder on bad inputs (issue 15, families 1, 2, 7, 8 and config values), on real media
from ../shared/data (copied into tmp_path where they are renamed or damaged)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from datasets_builders.build_plan import plan_units
from datasets_builders.faces import FaceDetector
from datasets_builders.frames import VideoDecodeError, iter_frames
from datasets_builders.mri_df import (
    BuildConfig,
    BuildError,
    BuildSourceConfig,
    FaceDetectionConfig,
    build_mri_df,
)
from mrigan.app.cli import main as cli_main
from mrigan.config import ConfigError, load_config
from mrigan.fileio import read_image, sha256_file
from mrigan.mri_df_format import read_manifest

FACES = FaceDetectionConfig(device="cpu", max_side=320, batch_size=4, size=64)
VIDEOS = "original_sequences/youtube/c23/videos"


@pytest.fixture(scope="module")
def detector():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield FaceDetector(device="cpu", max_side=FACES.max_side, batch_size=FACES.batch_size)
    torch.set_num_threads(threads)


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


def _cfg(out: Path, csv: Path, **kw) -> BuildConfig:
    kw = {"faces": FACES, "every": 100, "max_frames": 1, **kw}
    return BuildConfig(out=str(out), sources=(BuildSourceConfig(kind="csv", root=str(csv)),),
                       progress=False, **kw)


@pytest.fixture()
def colliding(tmp_path, ffpp_root):
    """``x y.mp4`` (fake of 519) and ``x_y.mp4`` (fake of 634): one sanitised name; and the
    634 row listed twice."""
    media = tmp_path / "media"
    media.mkdir()
    shutil.copy(ffpp_root / "manipulated_sequences/Deepfakes/c23/videos/519_515.mp4", media / "x y.mp4")
    shutil.copy(ffpp_root / "manipulated_sequences/FaceSwap/c23/videos/634_660.mp4", media / "x_y.mp4")
    orig = ffpp_root / VIDEOS
    csv = media / "list.csv"
    csv.write_text("path,label,original\n"
                   f"x y.mp4,fake,{orig / '519.mp4'}\n"
                   f"x_y.mp4,fake,{orig / '634.mp4'}\n"
                   f"x_y.mp4,fake,{orig / '634.mp4'}\n")
    return csv


def test_colliding_ids_are_disambiguated_and_duplicate_rows_listed_once(colliding, tmp_path, detector):
    cfg = _cfg(tmp_path / "out", colliding)
    plan = plan_units(cfg)
    fake_ids = sorted(f.video_id for u in plan.units for f in u.fakes)
    assert len(set(fake_ids)) == 2 and all(i.startswith("x_y-") for i in fake_ids)
    assert fake_ids == sorted(f.video_id for u in plan_units(cfg).units for f in u.fakes)  # deterministic
    summary = build_mri_df(cfg, log=lambda _l: None, detector=detector)
    assert summary.skipped == {"listed twice": 1}
    rows = read_manifest(tmp_path / "out")
    assert len(rows) == 4 and len({r["image"] for r in rows}) == 4  # 2 reals + 2 fakes, no overwrite
    real = {r["video"]: read_image(tmp_path / "out" / r["image"]).astype(float)
            for r in rows if r["label"] == "real"}
    for r in (r for r in rows if r["label"] == "fake"):
        face = read_image(tmp_path / "out" / r["image"]).astype(float)
        other = next(v for v in real if v != r["original"])
        # a fake row holds its own video's face: close to its original, far from the other one
        assert np.abs(face - real[r["original"]]).mean() < np.abs(face - real[other]).mean() / 2


def test_resume_with_other_settings_is_refused_until_restart(colliding, tmp_path, detector):
    out = tmp_path / "out"
    build_mri_df(_cfg(out, colliding), log=lambda _l: None, detector=detector)
    config_before = (out / "config.yaml").read_text()
    bigger = _cfg(out, colliding, faces=FaceDetectionConfig(device="cpu", max_side=320, batch_size=4, size=96))
    with pytest.raises(BuildError, match=r"faces\.size \(64 -> 96\)") as err:
        build_mri_df(bigger, log=lambda _l: None, detector=detector)
    assert str(out) in str(err.value) and "--restart" in str(err.value)
    assert (out / "config.yaml").read_text() == config_before  # nothing rewritten
    assert {read_image(out / r["image"]).shape for r in read_manifest(out)} == {(64, 64, 3)}
    summary = build_mri_df(bigger, log=lambda _l: None, detector=detector, restart=True)
    assert summary.units_built == 2 and summary.units_resumed == 0
    assert {read_image(out / r["image"]).shape for r in read_manifest(out)} == {(96, 96, 3)}
    # the same settings again resume (a device change does not count)
    again = _cfg(out, colliding, faces=FaceDetectionConfig(device="auto", max_side=320, batch_size=2, size=96))
    assert build_mri_df(again, log=lambda _l: None, detector=detector).units_resumed == 2


def test_a_second_writer_gets_a_clear_error_and_a_dead_ones_lock_is_taken_over(colliding, tmp_path,
                                                                                detector):
    out = tmp_path / "out"
    lock = out / "locks" / "shard-1-of-1.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))  # alive
    with pytest.raises(BuildError, match="another build .* is writing this shard"):
        build_mri_df(_cfg(out, colliding), log=lambda _l: None, detector=detector)
    assert not (out / "done").exists()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    lock.write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    summary = build_mri_df(_cfg(out, colliding), log=lambda _l: None, detector=detector)
    assert summary.units_built == 2 and not lock.exists()  # taken over, released at the end


def test_csv_mode_never_writes_inside_the_inputs_folder(colliding, capsys):
    media = colliding.parent
    before = _tree(media)
    code = cli_main(["build-dataset", "--csv", str(colliding), "--out", str(media / "out"),
                     "--every", "100", "--size", "64", "--max-frames", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "inside the input folder" in err and len(err.strip().splitlines()) == 1
    assert _tree(media) == before and not (media / "out").exists()


def _faststart_copy(src: Path, dest: Path) -> Path:
    """``src`` remuxed with the index (moov) first, as web videos are."""
    with av.open(str(src)) as inp, av.open(str(dest), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is None:
                continue
            packet.stream = stream
            out.mux(packet)
    return dest


def test_truncated_mp4_is_reported_not_read_as_a_short_video(tmp_path, ffpp_root, detector):
    whole = _faststart_copy(ffpp_root / "manipulated_sequences/FaceSwap/c23/videos/634_660.mp4",
                            tmp_path / "whole.mp4")
    assert sum(1 for _ in iter_frames(whole, every=1)) == 338
    media = tmp_path / "media"
    media.mkdir()
    cut = media / "cut.mp4"
    data = whole.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.3)])
    with pytest.raises(VideoDecodeError, match="truncated: decoded 96 of the 338 frames") as err:
        list(iter_frames(cut, every=1))
    assert err.value.path == str(cut)
    csv = media / "list.csv"
    csv.write_text(f"path,label,original\ncut.mp4,fake,{ffpp_root / VIDEOS / '634.mp4'}\n")
    summary = build_mri_df(_cfg(tmp_path / "out", csv, max_frames=None), log=lambda _l: None,
                           detector=detector)
    assert summary.skipped == {"fake unreadable": 1}
    assert {r["label"] for r in read_manifest(tmp_path / "out")} == {"real"}
    record = next((tmp_path / "out" / "done").glob("*.json")).read_text()
    assert "truncated: decoded 96 of the 338" in record


@pytest.mark.parametrize("args, key", [
    (["--size", "0"], "faces.size"), (["--size", "-5"], "faces.size"), (["--size", "3"], "faces.size"),
    (["--max-frames", "-1"], "max_frames"), (["--every", "0"], "every"),
    (["--set", "faces.margin=-1"], "faces.margin"), (["--shard", "3/2"], "shard"),
    (["--set", "faces.thresholds=[0.5,2,0.5]"], "faces.thresholds"),
    (["--set", "split.val=0.9"], "split.val"),
])
def test_bad_config_values_stop_before_any_work(colliding, tmp_path, capsys, args, key):
    out = tmp_path / "out"
    code = cli_main(["build-dataset", "--csv", str(colliding), "--out", str(out), "--no-progress", *args])
    err = capsys.readouterr().err
    assert code == 2 and key in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(BuildConfig, None, [f"sources=[{{kind: csv, root: {colliding}}}]", *_as_sets(args)])


def _as_sets(args: list[str]) -> list[str]:
    flag = {"--size": "faces.size", "--max-frames": "max_frames", "--every": "every", "--shard": "shard"}
    return [args[1]] if args[0] == "--set" else [f"{flag[args[0]]}={args[1]}"]


def test_non_utf8_csv_is_one_line_error_and_extra_field_row_is_counted(tmp_path, ffpp_root, capsys,
                                                                        detector):
    media = tmp_path / "media"
    media.mkdir()
    bad = media / "latin1.csv"
    bad.write_bytes("path,label\nvidéo.mp4,real\n".encode("latin-1"))
    code = cli_main(["build-dataset", "--csv", str(bad), "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and str(bad) in err and "UTF-8" in err and len(err.strip().splitlines()) == 1
    extra = media / "extra.csv"
    extra.write_text(f"path,label\n{ffpp_root / VIDEOS / '634.mp4'},real\n"
                     f"{ffpp_root / VIDEOS / '519.mp4'},real,surplus\n")
    summary = build_mri_df(_cfg(tmp_path / "out2", extra), log=lambda _l: None, detector=detector)
    assert summary.skipped == {"bad CSV row (not one value per column)": 1}
    assert {r["identity"] for r in read_manifest(tmp_path / "out2")} == {"634"}


def test_colliding_original_ids_become_two_units(tmp_path, ffpp_root):
    media = tmp_path / "media"
    media.mkdir()
    shutil.copy(ffpp_root / VIDEOS / "519.mp4", media / "a b.mp4")
    shutil.copy(ffpp_root / VIDEOS / "634.mp4", media / "a_b.mp4")
    shutil.copy(ffpp_root / "manipulated_sequences/FaceSwap/c23/videos/634_660.mp4", media / "fake.mp4")
    csv = media / "list.csv"
    csv.write_text("path,label,original\na b.mp4,real,\na_b.mp4,real,\nfake.mp4,fake,a_b.mp4\n")
    units = plan_units(_cfg(tmp_path / "out", csv)).units
    assert len({u.key for u in units}) == 2 and all(u.key.startswith("csv/a_b-") for u in units)
    with_fake = [u for u in units if u.fakes]
    assert len(with_fake) == 1 and with_fake[0].original.path.name == "a_b.mp4"
    csv.write_text("path,label,original\na b.mp4,real,\na b.mp4,fake,a_b.mp4\n")
    with pytest.raises(BuildError, match="listed twice with different labels"):
        plan_units(_cfg(tmp_path / "out", csv))
