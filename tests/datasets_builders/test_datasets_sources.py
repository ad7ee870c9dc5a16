"""Dataset readers against the real sample folders (FF++, DFDC) and Celeb-DF naming fixtures."""

from __future__ import annotations

import pytest

from datasets_builders.sources import SourceError, read_source
from datasets_builders.sources.dfdc import parse_dfdc_metadata


def test_ffpp_layout(ffpp_root):
    listing = read_source("ffpp", ffpp_root)
    assert listing.counts() == {"real": 3, "fake": 3} and not listing.skipped
    fakes = {i.video_id: i for i in listing.items if i.label == "fake"}
    assert set(fakes) == {"Deepfakes/519_515", "FaceSwap/634_660", "NeuralTextures/004_982"}
    df = fakes["Deepfakes/519_515"]
    assert df.original == ffpp_root / "original_sequences/youtube/c23/videos/519.mp4"
    assert df.original.is_file() and df.identities == ("519", "515") and df.method == "Deepfakes"
    only = read_source("ffpp", ffpp_root, methods=["FaceSwap", "Face2Face"])
    assert [i.method for i in only.items if i.label == "fake"] == ["FaceSwap"]
    assert only.skip_counts() == {"method folder missing": 1}
    assert read_source("ffpp", ffpp_root, compression="c40").items == []
    with pytest.raises(SourceError, match="not a FaceForensics"):
        read_source("ffpp", ffpp_root / "original_sequences" / "youtube")


def test_dfdc_missing_file_and_missing_original(shared_data):
    root = shared_data / "dfdc_unpaired"
    listing = read_source("dfdc", root)
    assert listing.skip_counts() == {"listed file missing": 1}
    assert listing.skipped[0].path.endswith("yhffcuhhjy.mp4")
    (fake,) = listing.items
    assert fake.label == "fake" and fake.path == root / "widuwuoiur.mp4"
    assert fake.original == root / "ybqmttnept.mp4" and not fake.original.exists()
    assert fake.identity == "ybqmttnept" and fake.dataset_split == "train"


def test_dfdc_full_sample_metadata(shared_data):
    meta = parse_dfdc_metadata(shared_data / "dfdc_unpaired/train_sample_videos_metadata.json")
    assert len(meta) == 400
    assert sum(e["label"] == "FAKE" for e in meta.values()) == 323
    paired = [k for k, e in meta.items() if e["label"] == "FAKE" and e["original"] in meta]
    assert len(paired) == 58  # fakes whose original is among the 400 (data README)
    listing = read_source("dfdc", shared_data / "dfdc_unpaired",
                          metadata="train_sample_videos_metadata.json")
    assert listing.items == [] and listing.skip_counts() == {"listed file missing": 400}


def test_dfdc_part_folders_and_bad_metadata(tmp_path):
    for part, meta in (("dfdc_train_part_0", '{"a.mp4": {"label": "REAL"}, "b.mp4": {"label": '
                                              '"FAKE", "original": "a.mp4"}, "c.mp4": {"label": "X"}}'),
                       ("dfdc_train_part_1", '{"d.mp4": {"label": "FAKE"}}')):
        (tmp_path / part).mkdir()
        (tmp_path / part / "metadata.json").write_text(meta)
        for name in "abcd":
            (tmp_path / part / f"{name}.mp4").write_bytes(b"")
    listing = read_source("dfdc", tmp_path)
    assert [(i.video_id, i.label) for i in listing.items] == [
        ("dfdc_train_part_0/a", "real"), ("dfdc_train_part_0/b", "fake")]
    assert listing.items[1].original_id == "dfdc_train_part_0/a"
    assert listing.skip_counts() == {"bad metadata entry (FAKE without original)": 1,
                                     "bad metadata entry (label not REAL/FAKE)": 1}
    (tmp_path / "dfdc_train_part_1" / "metadata.json").write_text("{not json")
    with pytest.raises(SourceError, match="not valid JSON"):
        read_source("dfdc", tmp_path)


@pytest.fixture
def celebdf_root(tmp_path):
    """Celeb-DF-v2 naming, with empty files (the reader never decodes)."""
    root = tmp_path / "Celeb-DF-v2"
    files = ["Celeb-real/id0_0000.mp4", "Celeb-real/id0_0001.mp4", "Celeb-real/id16_0003.mp4",
             "YouTube-real/00170.mp4", "Celeb-synthesis/id0_id16_0000.mp4",
             "Celeb-synthesis/id16_id0_0003.mp4", "Celeb-synthesis/id3_id9_0002.mp4",
             "Celeb-synthesis/not_a_name.mp4", "Celeb-real/readme.txt"]
    for f in files:
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        (root / f).write_bytes(b"")
    (root / "List_of_testing_videos.txt").write_text(
        "1 YouTube-real/00170.mp4\n0 Celeb-synthesis/id0_id16_0000.mp4\n"
        "1 Celeb-real/id0_0001.mp4\n0 Celeb-synthesis/id5_id6_0009.mp4\n")
    return root


def test_celebdf_naming(celebdf_root):
    listing = read_source("celebdf", celebdf_root)
    items = {i.video_id: i for i in listing.items}
    assert listing.counts() == {"real": 4, "fake": 3}
    fake = items["Celeb-synthesis/id0_id16_0000"]
    assert fake.original == celebdf_root / "Celeb-real/id0_0000.mp4"
    assert fake.identities == ("id0", "id16") and fake.dataset_split == "test"
    assert items["Celeb-synthesis/id16_id0_0003"].original_id == "Celeb-real/id16_0003"
    assert not items["Celeb-synthesis/id3_id9_0002"].original.exists()  # listed, builder skips
    assert items["YouTube-real/00170"].identity == "youtube_00170"
    assert items["Celeb-real/id0_0001"].dataset_split == "test"
    assert items["Celeb-real/id0_0000"].dataset_split == "train"
    assert listing.skip_counts() == {"listed file missing": 1,
                                     "name does not follow Celeb-DF naming": 1}


def test_csv_listing_relative_paths_and_bad_rows(tmp_path, ffpp_root):
    import os

    rel = os.path.relpath(ffpp_root, tmp_path)
    (tmp_path / "list.csv").write_text(
        "path,label,original,identity,method\n"
        f"{rel}/original_sequences/youtube/c23/videos/634.mp4,real,,,\n"
        f"{rel}/manipulated_sequences/FaceSwap/c23/videos/634_660.mp4,FAKE,"
        f"{rel}/original_sequences/youtube/c23/videos/634.mp4,,FaceSwap\n"
        "missing.mp4,real,,,\n"
        "x.mp4,maybe,,,\n")
    listing = read_source("csv", tmp_path / "list.csv")
    real, fake = listing.items
    assert real.label == "real" and real.identity == "634"
    assert fake.label == "fake" and fake.original == real.path and fake.identity == "634"
    assert fake.method == "FaceSwap" and fake.original_id == real.video_id
    assert ".." not in real.video_id
    assert listing.skip_counts() == {"bad CSV row (empty path or label not real/fake)": 1,
                                     "listed file missing": 1}
    (tmp_path / "bad.csv").write_text("file,y\n")
    with pytest.raises(SourceError, match="needs columns path,label"):
        read_source("csv", tmp_path / "bad.csv")


def test_image_folder(ff_examples, tmp_path):
    listing = read_source("images", ff_examples)
    assert len(listing.items) == 5 and all(i.label == "real" and i.is_image for i in listing.items)
    assert len({i.identity for i in listing.items}) == 5
    by_folder = read_source("images", ff_examples, identity_from="folder")
    assert {i.identity for i in by_folder.items} == {"ff_examples"}
    with pytest.raises(SourceError, match="no images"):
        read_source("images", tmp_path)
    with pytest.raises(KeyError, match="known: celebdf, csv, dfdc, ffpp, images"):
        read_source("kaggle", tmp_path)
