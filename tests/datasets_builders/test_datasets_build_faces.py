"""Labelled face sets (``mrigan build-faces``) on real labelled videos without originals:
the shared labels.csv (FF++ fakes with no original, a 1080p DFDC fake, small in-the-wild
crops), DFDC's metadata.json with a listed file missing, FF++ official split lists, CSV split
columns; kill-and-resume equivalence, refused setting changes."""

from __future__ import annotations

import csv
import json
import threading
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch

from datasets_builders import build_faces as bf
from datasets_builders import build_unit
from datasets_builders.build_config import BuildError, BuildSourceConfig, BuildSplitConfig
from datasets_builders.build_faces import BuildFaceSetConfig, build_face_set, plan_face_units
from datasets_builders.faces import RECALL_SECOND_PASS_BELOW, FaceDetectionConfig, FaceDetector
from datasets_builders.sources import SourceError, read_source
from mrigan.app.cli import main as cli_main
from mrigan.fileio import read_image, sha256_file
from mrigan.mri_df_format import read_manifest

FAST = FaceDetectionConfig(device="cpu", max_side=480, batch_size=4, size=64,
                           second_pass_below=RECALL_SECOND_PASS_BELOW)
COLUMNS = ("image", "label", "video", "identity", "split", "method", "source", "frame", "track",
           "coverage", "detection_pass")


@pytest.fixture(scope="module")
def detector():
    torch.set_num_threads(2)
    return FaceDetector(device="cpu", thresholds=FAST.thresholds, min_face_size=FAST.min_face_size,
                        max_side=FAST.max_side, batch_size=FAST.batch_size)


@pytest.fixture(scope="module")
def labelled(shared_data):
    path = shared_data / "labelled_unpaired" / "labels.csv"
    with open(path, newline="") as fh:
        return path, list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def face_set(labelled, tmp_path_factory, detector):
    path, _ = labelled
    before = {p: sha256_file(p) for p in sorted(path.parent.rglob("*")) if p.is_file()}
    out = tmp_path_factory.mktemp("faces")
    cfg = BuildFaceSetConfig(out=str(out), sources=(BuildSourceConfig(kind="csv", root=str(path)),),
                        every=40, max_frames=3, max_faces=2, faces=FAST, progress=False,
                        split=BuildSplitConfig(val=0.2, test=0.2))
    logs: list[str] = []
    summary = build_face_set(cfg, log=logs.append, detector=detector)
    return {"out": out, "summary": summary, "logs": logs, "before": before, "cfg": cfg}


def test_face_set_from_labels_csv(face_set, labelled):
    out, summary = face_set["out"], face_set["summary"]
    path, listed = labelled
    rows = read_manifest(out, require_mri=False)
    header = (out / "manifest.csv").read_text().splitlines()[0].split(",")
    assert set(COLUMNS) <= set(header)
    by_video = defaultdict(list)
    for r in rows:
        by_video[r["video"]].append(r)
    expected = {f"csv/{Path(r['path']).with_suffix('').as_posix()}": r for r in listed}
    assert set(by_video) == set(expected)  # every labelled video, fakes without originals too
    for video, vrows in by_video.items():
        want = expected[video]
        assert {r["label"] for r in vrows} == {want["label"]}
        assert {r["identity"] for r in vrows} == {want["identity"]}
        assert {r["method"] for r in vrows} == {want["method"]}
        assert 1 <= len(vrows) <= 2  # max_faces
        assert len({r["split"] for r in vrows}) == 1
        assert all(r["mri"] == "" and r["detection_pass"] in ("1", "2") for r in vrows)
        assert {float(r["coverage"]) for r in vrows} == {summary.coverage[video]}
        assert all(int(r["frame"]) in (0, 40, 80) for r in vrows)
    for r in rows[:5]:
        face = read_image(out / r["image"])
        assert face.shape == (64, 64, 3) and face.std() > 5  # a real crop, not a blank
    assert 0 < min(summary.coverage.values()) and max(summary.coverage.values()) <= 1
    assert summary.pairs_written == len(rows) and summary.skipped == {}
    assert summary.fake_rows == sum(r["label"] == "fake" for r in rows)
    assert any("faces written" in line for line in face_set["logs"])
    # identity-grouped splits: no person in two splits, and all three splits used
    split_of = defaultdict(set)
    for r in rows:
        split_of[r["identity"]].add(r["split"])
    assert all(len(s) == 1 for s in split_of.values())
    assert {r["split"] for r in rows} == {"train", "val", "test"}
    # inputs untouched
    assert face_set["before"] == {p: sha256_file(p) for p in face_set["before"]}


def _wild_csv(tmp_path: Path, shared_data: Path) -> Path:
    wild = shared_data / "labelled_unpaired" / "in_the_wild"
    lines = ["path,label,identity"] + [f"{wild / f'{who}_{lab}.mp4'},{lab},{who}"
                                        for who in ("obama", "putin") for lab in ("real", "fake")]
    path = tmp_path / "wild.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def _cfg(out: Path, csv_path: Path, **kw) -> BuildFaceSetConfig:
    base = {"out": str(out), "sources": (BuildSourceConfig(kind="csv", root=str(csv_path)),),
            "every": 25, "max_frames": 3, "max_faces": 2, "faces": FAST, "progress": False}
    return BuildFaceSetConfig(**{**base, **kw})


def _same_face_set(a: Path, b: Path) -> None:
    assert (a / "manifest.csv").read_text() == (b / "manifest.csv").read_text()
    for r in read_manifest(a, require_mri=False):
        assert (a / r["image"]).read_bytes() == (b / r["image"]).read_bytes()


def test_background_png_saving_writes_the_same_face_set(tmp_path, shared_data, detector,
                                                        monkeypatch):
    """Face PNGs saved by the background saver (the default) or in the building thread
    (``PENDING_WRITES = 0``): the same manifest and the same bytes, no thread left running."""
    csv_path = _wild_csv(tmp_path, shared_data)
    background = tmp_path / "background"
    build_face_set(_cfg(background, csv_path), log=lambda _l: None, detector=detector)
    monkeypatch.setattr(build_unit, "PENDING_WRITES", 0)
    before = threading.active_count()
    sync = tmp_path / "sync"
    build_face_set(_cfg(sync, csv_path), log=lambda _l: None, detector=detector)
    assert threading.active_count() == before
    assert len(read_manifest(sync, require_mri=False)) >= 4
    _same_face_set(sync, background)


def test_killed_face_set_resumes_to_the_same_manifest(tmp_path, shared_data, detector, monkeypatch):
    csv_path = _wild_csv(tmp_path, shared_data)
    reference = tmp_path / "reference"
    build_face_set(_cfg(reference, csv_path), log=lambda _l: None, detector=detector)

    out = tmp_path / "killed"
    real_call = bf.FaceUnitBuilder.__call__
    calls: list[str] = []

    def dies_after_two(self, unit):
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        calls.append(unit.key)
        return real_call(self, unit)

    monkeypatch.setattr(bf.FaceUnitBuilder, "__call__", dies_after_two)
    with pytest.raises(KeyboardInterrupt):
        build_face_set(_cfg(out, csv_path), log=lambda _l: None, detector=detector)
    assert len(list((out / "done").glob("*.json"))) == 2 and not (out / "manifest.csv").exists()

    redone: list[str] = []
    monkeypatch.setattr(bf.FaceUnitBuilder, "__call__",
                        lambda self, unit: redone.append(unit.key) or real_call(self, unit))
    summary = build_face_set(_cfg(out, csv_path), log=lambda _l: None, detector=detector)
    assert summary.units_resumed == 2 and summary.units_built == 2 and not set(redone) & set(calls)
    _same_face_set(reference, out)

    # shards into one folder, then merge: the same face set again
    sharded = tmp_path / "sharded"
    for k in (1, 2):
        build_face_set(_cfg(sharded, csv_path, shard=f"{k}/2"), log=lambda _l: None, detector=detector)
    bf.merge_face_shards(_cfg(sharded, csv_path), log=lambda _l: None)
    _same_face_set(reference, sharded)


def test_cli_refuses_changed_settings(tmp_path, shared_data, capsys):
    csv_path = _wild_csv(tmp_path, shared_data)
    out = tmp_path / "cli"
    args = ["build-faces", "--csv", str(csv_path), "--out", str(out), "--every", "50",
            "--max-frames", "1", "--size", "64", "--no-progress", "--set", "faces.device=cpu"]
    assert cli_main(args) == 0
    text = capsys.readouterr().out
    assert "faces written: 4 (2 fake, 2 real)" in text and "skipped: 0" in text
    assert len(read_manifest(out, require_mri=False)) == 4
    assert cli_main(args) == 0  # same settings: resumed
    assert "0 built now, 4 already done" in capsys.readouterr().out
    changed = [a if a != "64" else "96" for a in args]
    assert cli_main(changed) == 2
    err = capsys.readouterr().err
    assert "faces.size (64 -> 96)" in err and "--restart" in err
    assert cli_main([*changed, "--restart"]) == 0
    assert read_image(out / read_manifest(out, require_mri=False)[0]["image"]).shape == (96, 96, 3)


def test_dfdc_metadata_face_set_counts_the_missing_file(tmp_path, shared_data, detector):
    root = shared_data / "dfdc_unpaired"
    listing = read_source("dfdc", root)
    assert [i.path.name for i in listing.items] == ["widuwuoiur.mp4"]  # its original is absent
    assert listing.skip_counts() == {"listed file missing": 1}
    cfg = BuildFaceSetConfig(out=str(tmp_path / "dfdc"), sources=(BuildSourceConfig(kind="dfdc", root=str(root)),),
                        every=100, max_frames=2, max_faces=3, faces=FAST, progress=False)
    summary = build_face_set(cfg, log=lambda _l: None, detector=detector)
    rows = read_manifest(tmp_path / "dfdc", require_mri=False)
    assert summary.skipped == {"listed file missing": 1}
    assert rows and {(r["label"], r["video"], r["identity"]) for r in rows} == {
        ("fake", "dfdc/widuwuoiur", "ybqmttnept")}
    # DFDC's metadata says "train" for every video: the split is by identity, not the metadata
    assert {r["dataset_split"] for r in rows} == {"train"}


def _ffpp_lists(folder: Path, lists: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, pairs in lists.items():
        (folder / f"{split}.json").write_text(json.dumps(pairs))
    return folder


def test_ffpp_official_split_lists(tmp_path, ffpp_root):
    lists = _ffpp_lists(tmp_path / "splits", {"train": [["519", "515"]], "val": [["660", "634"]],
                                              "test": [["004", "982"]]})
    cfg = BuildFaceSetConfig(out=str(tmp_path / "out"), faces=FAST, progress=False,
                        sources=(BuildSourceConfig(kind="ffpp", root=str(ffpp_root),
                                              options={"split_lists": str(lists)}),))
    plan = plan_face_units(cfg)
    splits = {u.original.video_id: u.split for u in plan.units}
    assert splits == {"original/519": "train", "Deepfakes/519_515": "train",
                      "original/634": "val", "FaceSwap/634_660": "val",  # listed as [660, 634]
                      "original/004": "test", "NeuralTextures/004_982": "test"}
    assert {u.original.label for u in plan.units} == {"real", "fake"}
    # no lists: identity-grouped splits from the seeded fractions
    plain = plan_face_units(BuildFaceSetConfig(out=str(tmp_path / "out"), sources=(
        BuildSourceConfig(kind="ffpp", root=str(ffpp_root)),), split=BuildSplitConfig(val=0.34, test=0.34)))
    assert sorted(u.split for u in plain.units) == ["test", "test", "train", "train", "val", "val"]
    _ffpp_lists(tmp_path / "bad", {"train": [["519", "515"]], "test": [["515", "519"]]})
    with pytest.raises(SourceError, match="in both train and test"):
        read_source("ffpp", ffpp_root, split_lists=str(tmp_path / "bad"))
    (tmp_path / "worse").mkdir()
    (tmp_path / "worse" / "val.json").write_text('{"519": "val"}')
    with pytest.raises(SourceError, match="id pairs"):
        read_source("ffpp", ffpp_root, split_lists=str(tmp_path / "worse"))


def test_csv_split_column_is_kept(tmp_path, shared_data):
    wild = shared_data / "labelled_unpaired" / "in_the_wild"
    rows = [("obama_real", "real", "test"), ("obama_fake", "fake", "test"),
            ("putin_real", "real", "val"), ("putin_fake", "fake", "train"),
            ("clinton_real", "real", "")]
    path = tmp_path / "split.csv"
    path.write_text("path,label,identity,split\n" + "".join(
        f"{wild / n}.mp4,{lab},{n.split('_')[0]},{s}\n" for n, lab, s in rows))
    plan = plan_face_units(_cfg(tmp_path / "out", path))
    got = {u.original.video_id.rsplit("/", 1)[-1]: u.split for u in plan.units}
    assert {k: v for k, v in got.items() if k != "clinton_real"} == {
        "obama_real": "test", "obama_fake": "test", "putin_real": "val", "putin_fake": "train"}
    assert got["clinton_real"] in ("train", "val", "test")  # no split given: grouped by identity
    path.write_text(path.read_text().replace(",val\n", ",holdout\n"))
    with pytest.raises(BuildError, match="holdout"):
        plan_face_units(_cfg(tmp_path / "out", path))


def test_max_faces_are_evenly_spaced():
    faces = [(i, j) for i in range(0, 100, 10) for j in range(2)]  # 10 frames x 2 faces
    picked = bf.select_faces(faces, 4)
    assert len(picked) == 4 and (0, 0) in picked and (90, 1) in picked
    assert bf.select_faces(faces[:3], 4) == set(faces[:3])
    assert np.ptp(sorted(i for i, _ in picked)) == 90


def test_bad_videos_are_skipped_and_counted(tmp_path, shared_data, ff_examples, detector):
    """The MRI-DF builder's skip-and-count rules: a truncated video, an image without a face
    and a missing file are each counted; the good video is still written."""
    wild = shared_data / "labelled_unpaired" / "in_the_wild"
    data = (wild / "obama_fake.mp4").read_bytes()
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "truncated.mp4").write_bytes(data[: len(data) // 3])
    path = inputs / "bad.csv"
    path.write_text("path,label\n"
                    f"{wild / 'obama_real.mp4'},real\n"
                    "truncated.mp4,fake\n"
                    f"{ff_examples / 'ex_deepfakes_mask.png'},fake\n"  # black and white: no face
                    "gone.mp4,fake\n")
    summary = build_face_set(_cfg(tmp_path / "out", path), log=lambda _l: None, detector=detector)
    assert summary.skipped == {"listed file missing": 1, "no face found": 1, "video unreadable": 1}
    rows = read_manifest(tmp_path / "out", require_mri=False)
    assert {r["video"] for r in rows} == {f"csv/abs{wild.as_posix()}/obama_real"}
