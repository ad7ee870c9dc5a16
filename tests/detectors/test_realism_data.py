"""MOS label readers on the real benchmark files, splits, the sequence sampler, clip joins."""

from __future__ import annotations

import csv
import itertools

import numpy as np
import pytest

from detectors.realism import clips as clips_mod
from detectors.realism.labels import (
    LabelError,
    MosRecord,
    read_mos_labels,
    sniff_format,
    write_table,
)
from detectors.realism.sampler import SequenceSampler
from detectors.realism.splits import SplitError, identity_components, make_split


@pytest.fixture(scope="module")
def dream(shared_data):
    return read_mos_labels(shared_data / "mos_labels" / "dream_ffpp_subset.csv")


@pytest.fixture(scope="module")
def dfgc(shared_data):
    return read_mos_labels(shared_data / "mos_labels" / "dfgc2022_C1_mos.csv")


def _raw_rows(path, mos_col):
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))[1:]
    return [(r[0], float(r[mos_col])) for r in rows if r]


def test_dream_reader_on_the_real_file(shared_data, dream):
    path = shared_data / "mos_labels" / "dream_ffpp_subset.csv"
    assert sniff_format(path) == "dream"
    assert [(r.key, r.mos) for r in dream] == _raw_rows(path, 1)  # every row, in order
    by_key = {r.key: r for r in dream}
    fake = by_key["Face2Face/093_121.mp4"]
    assert (fake.mos, fake.identities, fake.method, fake.stem) == (2.4, ("093", "121"), "Face2Face", "093_121")
    assert by_key["original/147.mp4"].identities == ("147",)
    assert by_key["original/147.mp4"].method == "original"
    assert {r.method for r in dream} == {"Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "original"}
    # real videos are rated as more realistic than every fake method on average
    mean = {m: np.mean([r.mos for r in dream if r.method == m]) for m in {r.method for r in dream}}
    assert mean["original"] == max(mean.values()) and mean["Deepfakes"] == min(mean.values())


def test_dfgc_reader_on_the_real_file(shared_data, dfgc):
    path = shared_data / "mos_labels" / "dfgc2022_C1_mos.csv"
    assert sniff_format(path) == "dfgc"
    assert [(r.key, r.mos) for r in dfgc] == _raw_rows(path, 3)  # MOS is the 4th column
    r = next(r for r in dfgc if r.key == "7-2-10-submit-74734-crop")
    assert r.identities == ("clip74734",) and r.method == "team7"
    assert r.info == {"idpair": "2", "submission": "10"}
    assert len({r.method for r in dfgc}) == 20 and len({r.identities for r in dfgc}) == 6


def test_label_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("file,mos\nFace2Face/093_121.mp4,2.4\nFaceSwap/001_002.mp4,abc\n")
    with pytest.raises(LabelError, match=r"bad\.csv:3: MOS 'abc' is not a number"):
        read_mos_labels(bad)
    bad.write_text("file,mos\nFaceSwap/001_002.mp4,7\n")
    with pytest.raises(LabelError, match=r"bad\.csv:2: .*outside the 1-5"):
        read_mos_labels(bad)
    bad.write_text("file,mos\nFaceSwap/weird.mp4,3\n")
    with pytest.raises(LabelError, match="not an FF\\+\\+ video name"):
        read_mos_labels(bad)
    bad.write_text("name,,,mos\n1-1-3-submit-00000-crop,,,4\n1-1-3-submit-00000-crop,,,3\n")
    with pytest.raises(LabelError, match="rated twice"):
        read_mos_labels(bad)
    bad.write_text("video;score\n")
    with pytest.raises(LabelError, match="unknown MOS label header"):
        read_mos_labels(bad)
    with pytest.raises(LabelError, match="not found"):
        read_mos_labels(tmp_path / "absent.csv")


def test_table_format_round_trip(tmp_path):
    recs = [MosRecord("a/x1", 2.5, ("p1",), "m1", "table"),
            MosRecord("b/x2", 4.0, ("p2", "p3"), "m2", "table")]
    write_table(tmp_path / "t.csv", recs)
    back = read_mos_labels(tmp_path / "t.csv")
    assert [(r.key, r.mos, r.identities, r.method) for r in back] == \
        [(r.key, r.mos, r.identities, r.method) for r in recs]


def _ids(records, idx):
    return {i for k in idx for i in records[k].identities}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dream_identity_split_never_shares_a_person(dream, seed):
    split = make_split(dream, "identity", test_fraction=0.3, val_fraction=0.15, seed=seed)
    test = split.tests["unseen_identity"]
    parts = [split.train, split.val, test]
    assert sorted(itertools.chain(*parts)) == list(range(len(dream)))  # a partition
    for a, b in itertools.combinations(parts, 2):
        assert not _ids(dream, a) & _ids(dream, b)  # no person in two parts, in any role
    assert 0.15 <= len(test) / len(dream) <= 0.5
    # 223_586 and 586_223 tie both ids into one group: they must end up together
    where = {dream[i].key: name for name, idx in [("train", split.train), ("val", split.val),
                                                  ("test", test)] for i in idx}
    assert where["Deepfakes/223_586.mp4"] == where["Deepfakes/586_223.mp4"] == where["original/223.mp4"]


def test_identity_components_are_transitive():
    recs = [MosRecord("a", 3, ("1", "2"), "m", "t"), MosRecord("b", 3, ("2", "3"), "m", "t"),
            MosRecord("c", 3, ("4",), "m", "t"), MosRecord("d", 3, ("3",), "m", "t")]
    comp = identity_components(recs)
    assert comp[0] == comp[1] == comp[3] != comp[2]


def test_dfgc_three_test_sets_are_the_2x2_grid(dfgc):
    split = make_split(dfgc, "both", test_fraction=0.3, seed=0)
    assert set(split.tests) == {"unseen_identity", "unseen_method", "unseen_both"}
    held_m, held_i = set(split.held_out_methods), set(split.held_out_identities)
    train_like = split.train + split.val
    assert not {dfgc[i].method for i in train_like} & held_m
    assert not _ids(dfgc, train_like) & held_i
    ti, tm, tb = (split.tests[k] for k in ("unseen_identity", "unseen_method", "unseen_both"))
    assert _ids(dfgc, ti) <= held_i and not {dfgc[i].method for i in ti} & held_m
    assert {dfgc[i].method for i in tm} <= held_m and not _ids(dfgc, tm) & held_i
    assert _ids(dfgc, tb) <= held_i and {dfgc[i].method for i in tb} <= held_m
    assert len(train_like) + len(ti) + len(tm) + len(tb) == len(dfgc)


def test_method_split_keeps_originals_seen_and_fixed_protocols(dream):
    split = make_split(dream, "method", test_fraction=0.25, seed=3)
    assert "original" not in split.held_out_methods and len(split.held_out_methods) == 1
    fixed = make_split(dream, "both", test_identities=["093", "000"], test_methods=["FaceSwap"])
    assert fixed.held_out_methods == ("FaceSwap",)
    assert {"093", "121", "000", "003"} <= set(fixed.held_out_identities)
    assert {dream[i].key for i in fixed.tests["unseen_both"]} == {"FaceSwap/093_121.mp4",
                                                                   "FaceSwap/000_003.mp4"}
    with pytest.raises(SplitError, match="not in the labels"):
        make_split(dream, "identity", test_identities=["999"])
    one_method = [MosRecord(str(i), 3, (str(i),), "self_blend", "t") for i in range(6)]
    with pytest.raises(SplitError, match="cannot hold out methods"):
        make_split(one_method, "method")


def test_sampler_consecutive_random_start_and_reproducible_test_draws():
    s = SequenceSampler(num_frames=5, stride=2, test_draws=10)
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(200):
        idx = s.sample(30, rng)
        assert len(idx) == 5 and (np.diff(idx) == 2).all() and idx[-1] < 30
        starts.add(int(idx[0]))
    assert starts == set(range(0, 30 - 8))  # every legal start is drawn
    short = s.sample(6, rng)  # stride shrinks to fit a short video
    assert len(short) == 5 and short[-1] < 6 and (np.diff(short) == 1).all()
    assert list(s.sample(2, rng)) == [0, 1, 1, 1, 1]  # shorter than 5: the last frame repeats
    a, b = s.test_sequences(40, "vid1"), s.test_sequences(40, "vid1")
    assert len(a) == 10 and all((x == y).all() for x, y in zip(a, b, strict=True))
    assert len({tuple(x) for x in a}) > 1  # ten different draws, not one repeated
    assert any((x != y).any() for x, y in zip(a, s.test_sequences(40, "vid2"), strict=True))
    with pytest.raises(ValueError):
        SequenceSampler(num_frames=0)


def test_clips_from_manifest_joins_dream_keys_to_longest_track(tmp_path):
    rows = []
    for track, frames in (("0", [3, 1, 2]), ("1", [5])):
        for f in frames:
            rows.append({"image": f"img/093_121_{track}_{f}.png", "mri": f"mri/093_121_{track}_{f}.png",
                         "label": "fake", "video": "manipulated_sequences/Face2Face/c23/videos/093_121.mp4",
                         "method": "Face2Face", "frame": str(f), "track": track})
    rows.append({"image": "img/o.png", "mri": "", "label": "real", "video": "original/x/121.mp4",
                 "method": "original", "frame": "0", "track": "0"})
    recs = [MosRecord("Face2Face/093_121.mp4", 2.4, ("093", "121"), "Face2Face", "dream"),
            MosRecord("NeuralTextures/093_121.mp4", 3.0, ("093", "121"), "NeuralTextures", "dream")]
    found, missing = clips_mod.clips_from_manifest(recs, tmp_path, rows=rows)
    assert missing == ["NeuralTextures/093_121.mp4"]  # same stem, other method: never guessed
    (clip,) = found
    assert [p.rsplit("_", 1)[1] for p in clip.faces] == ["1.png", "2.png", "3.png"]  # frame order
    assert len(clip.mris) == 3 and clip.mos == 2.4


def test_clips_from_folders_counts_missing_and_checks_mris(tmp_path):
    from mrigan.fileio import atomic_save_image

    img = np.zeros((8, 8, 3), np.uint8)
    for name in ("0001.png", "0002.png"):
        atomic_save_image(tmp_path / "Deepfakes" / "000_003" / name, img)
    atomic_save_image(tmp_path / "Deepfakes" / "000_003" / "mri" / "0001.png", img)
    recs = [MosRecord("Deepfakes/000_003.mp4", 3.3, ("000", "003"), "Deepfakes", "dream"),
            MosRecord("Deepfakes/043_110.mp4", 1.0, ("043", "110"), "Deepfakes", "dream")]
    with pytest.raises(FileNotFoundError, match=r"no MRI for face frame\(s\) \['0002.png'\]"):
        clips_mod.clips_from_folders(recs, tmp_path)
    atomic_save_image(tmp_path / "Deepfakes" / "000_003" / "mri" / "0002.png", img)
    found, missing = clips_mod.clips_from_folders(recs, tmp_path)
    assert missing == ["Deepfakes/043_110.mp4"] and len(found[0]) == 2 and len(found[0].mris) == 2
    with pytest.raises(ValueError, match="relative path"):
        clips_mod.clip_dir(tmp_path, "../escape.mp4")


def test_faces_are_extracted_once_from_rated_videos(ffpp_root, tmp_path):
    from detectors.realism.config import RealismDataConfig
    from detectors.realism.data import RealismDataError, load_clips

    recs = [MosRecord("original_sequences/youtube/c23/videos/519.mp4", 4.8, ("519",), "original", "t"),
            MosRecord("original_sequences/youtube/c23/videos/999.mp4", 4.0, ("999",), "original", "t")]
    cfg = RealismDataConfig(clips=str(tmp_path / "faces"), videos=str(ffpp_root), video_every=10,
                     video_max_frames=4, face_size=48)
    with pytest.raises(RealismDataError, match=r"1 of 2 rated videos have no frames.*999\.mp4"):
        load_clips(cfg, recs, need_mri=False)
    logs = []
    from detectors.realism.data import extract_missing_faces

    assert extract_missing_faces(cfg, recs, log=logs.append)["cached"] == 1  # not decoded again
    clips, missing = load_clips(RealismDataConfig(clips=cfg.clips, allow_missing=True), recs, need_mri=False)
    assert missing == [recs[1].key] and len(clips) == 1
    faces = sorted((tmp_path / "faces" / "original_sequences/youtube/c23/videos/519").glob("*.png"))
    assert [f.name for f in faces] == ["000000.png", "000010.png", "000020.png", "000030.png"]
    from mrigan.fileio import read_image

    assert read_image(faces[0]).shape == (48, 48, 3)
    assert not any(p.suffix == ".png" for p in ffpp_root.rglob("*.png"))  # input folder untouched


def test_labels_join_a_manifest_written_by_the_mri_df_writer(tmp_path):
    """The join reads what datasets_builders writes (real manifest, real files on disk)."""
    from datasets_builders.synthetic import write_synthetic_mri_df
    from detectors.realism.config import RealismDataConfig
    from detectors.realism.data import prepare_data
    from mrigan.fileio import read_image

    root = write_synthetic_mri_df(tmp_path / "mri_df", n_faces=6, size=32)
    labels = tmp_path / "labels.csv"
    labels.write_text("file,mos,identity,method\n"
                      + "".join(f"face{i:03d}_fake0.mp4,{1 + i * 0.5},face{i:03d},self_blend\n" for i in range(6))
                      + "face000_real.mp4,4.9,face000,original\nface001_real,4.7,face001,original\n")
    data = prepare_data(RealismDataConfig(labels=(str(labels),), manifest=str(root), split="identity",
                                   test_fraction=0.3, val_fraction=0.0), need_mri=True)
    assert len(data.clips) == 8 and not data.missing
    clip = next(c for c in data.clips if c.key == "face002_fake0.mp4")
    assert clip.faces[0].endswith("faces/face002_fake0/f000000_t0.png")
    assert clip.mris[0].endswith("mri/face002_fake0/f000000_t0.png")
    assert read_image(clip.mris[0]).max() > 0  # the fake's MRI, not the black real one
    test_ids = {c.record.identities[0] for c in data.tests["unseen_identity"]}
    assert test_ids and not test_ids & {c.record.identities[0] for c in data.train}


def test_commands_report_bad_input_in_one_line(tmp_path, capsys):
    from mrigan.app.cli import main

    missing = tmp_path / "nope.csv"
    assert main(["train-realism", "--config", "configs/realism_cpu.yaml",
                 "--set", f"data.labels=[{missing}]", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mrigan train-realism: ") and f"{missing}: MOS label file not found" in err
    assert main(["train-realism", "--config", "configs/realism_cpu.yaml", "--set", "model.inputs=rgb",
                 "--out", str(tmp_path / "run")]) == 2
    assert "unknown realism input 'rgb'" in capsys.readouterr().err
    assert main(["evaluate-realism", "--checkpoint", str(tmp_path / "absent.pt")]) == 2
    assert "absent.pt" in capsys.readouterr().err
