"""MRI-DF manifest, Dataset and balanced sampling, on a synthetic MRI-DF written to disk."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from datasets_builders.synthetic import write_synthetic_mri_df
from mrigan.fileio import read_image
from mrigan.mri_df_format import (
    MANIFEST_COLUMNS,
    ManifestError,
    MriDfDataset,
    balanced_indices,
    read_manifest,
    write_manifest,
)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    return write_synthetic_mri_df(tmp_path_factory.mktemp("synth"), n_faces=12, size=48,
                                  fakes_per_face=2, seed=3, val_fraction=0.25)


def test_synthetic_manifest_counts_columns_and_identity_splits(synth_root):
    rows = read_manifest(synth_root)
    assert list(rows[0])[: len(MANIFEST_COLUMNS)] == list(MANIFEST_COLUMNS)
    assert sum(r["label"] == "real" for r in rows) == 12
    assert sum(r["label"] == "fake" for r in rows) == 24
    splits = {}
    for r in rows:
        splits.setdefault(r["identity"], set()).add(r["split"])
        assert (synth_root / r["image"]).is_file() and (synth_root / r["mri"]).is_file()
    assert all(len(s) == 1 for s in splits.values()), "an identity spans two splits"
    n_val = sum(s == {"val"} for s in splits.values())
    assert n_val == 3  # 25% of 12 identities


def test_synthetic_mri_is_clipped_one_minus_skimage_ssim(synth_root):
    rows = read_manifest(synth_root)
    real_of = {r["identity"]: read_image(synth_root / r["image"]) for r in rows if r["label"] == "real"}
    fakes = [r for r in rows if r["label"] == "fake"]
    for r in fakes[:4]:
        real, fake = real_of[r["identity"]], read_image(synth_root / r["image"])
        _, s = structural_similarity(real, fake, channel_axis=2, full=True, gaussian_weights=True,
                                     sigma=1.5, use_sample_covariance=False, data_range=255)
        expected = np.clip(np.rint(np.clip(1 - s, 0, 1) * 255), 0, 255)
        got = read_image(synth_root / r["mri"]).astype(np.float64)
        assert np.abs(got - expected).max() <= 1.0
        assert got.mean() > 2.0  # the blend is visible in the MRI
    for r in rows:
        if r["label"] == "real":
            assert read_image(synth_root / r["mri"]).max() == 0


def test_dataset_items_and_resize(synth_root):
    ds = MriDfDataset(synth_root, split="train")
    assert len(ds) == 27 and len(ds.labels) == 27 and set(ds.labels) == {0, 1}
    item = ds[0]
    assert item["image"].dtype == torch.float32 and item["image"].shape == (3, 48, 48)
    assert 0.0 <= float(item["image"].min()) and float(item["image"].max()) <= 1.0
    raw = read_image(synth_root / ds.rows[0]["image"])
    assert torch.allclose(item["image"], torch.from_numpy(raw).permute(2, 0, 1).float() / 255)
    fake_i = ds.labels.index(1)
    assert ds[fake_i]["label"] == 1 and float(ds[fake_i]["mri"].mean()) > 0
    small = MriDfDataset(synth_root, split="val", image_size=32)
    assert len(small) == 9 and small[0]["mri"].shape == (3, 32, 32)
    with pytest.raises(ManifestError, match="no rows in split"):
        MriDfDataset(synth_root, split="test")


def test_balanced_indices_is_a_deterministic_balanced_epoch():
    labels = [0] * 30 + [1] * 10
    a = balanced_indices(labels, epoch=4, seed=1)
    assert a == balanced_indices(labels, epoch=4, seed=1)
    assert len(a) == 20 and len(set(a)) == 20
    assert set(range(30, 40)) <= set(a)  # every fake
    assert sum(labels[i] == 0 for i in a) == 10
    epochs = [frozenset(balanced_indices(labels, e, 1)) for e in range(6)]
    assert len(set(epochs)) > 1, "the real draw must change across epochs"
    seen = set().union(*[balanced_indices(labels, e, 1) for e in range(20)])
    assert set(range(30)) <= seen
    few_reals = balanced_indices([0] * 3 + [1] * 7, epoch=0, seed=0)
    assert len(few_reals) == 14 and {0, 1, 2} <= set(few_reals)


def test_write_manifest_roundtrip_and_bad_label(tmp_path):
    rows = [{"image": "a.png", "mri": "b.png", "label": "fake", "video": "v", "split": "train",
             "identity": "i", "method": "m", "source": "s", "frame": 3, "track": 0, "extra": "x"}]
    write_manifest(tmp_path, rows)
    back = read_manifest(tmp_path)
    assert back[0]["frame"] == "3" and back[0]["extra"] == "x"
    assert not list(tmp_path.glob(".*.tmp"))
    write_manifest(tmp_path, [{**rows[0], "label": "FAKE"}])
    with pytest.raises(ManifestError, match="label 'FAKE'"):
        read_manifest(tmp_path)


def test_the_writer_names_files_by_one_rule_and_shares_one_black_mri(tmp_path, ff_examples):
    from mrigan.mri_df_format import MriDfWriter
    from mrigan.perceptual import mri_map_np, mri_to_uint8

    real = read_image(ff_examples / "ex_original.png")[100:196, 260:356]
    fake = read_image(ff_examples / "ex_deepfakes.png")[100:196, 260:356]
    writer = MriDfWriter(tmp_path)
    rows = [writer.write(face=real, label="real", video="ffpp/original/634", frame=7, track=1,
                         identity="634", split="train"),
            writer.write(face=real, label="real", video="ffpp/original/519", identity="519", split="val"),
            writer.write(face=fake, label="fake", video="ffpp/Deepfakes/634_660", frame=7, track=1,
                         mri=mri_map_np(real, fake), identity="634", split="train")]
    assert [r["image"] for r in rows] == ["faces/ffpp/original/634/f000007_t1.png",
                                          "faces/ffpp/original/519/f000000_t0.png",
                                          "faces/ffpp/Deepfakes/634_660/f000007_t1.png"]
    assert rows[0]["mri"] == rows[1]["mri"] == "mri/black_96.png"  # one black MRI per size
    assert read_image(tmp_path / rows[0]["mri"]).max() == 0
    assert rows[2]["mri"] == "mri/ffpp/Deepfakes/634_660/f000007_t1.png"
    np.testing.assert_array_equal(read_image(tmp_path / rows[2]["mri"]),
                                  mri_to_uint8(mri_map_np(real, fake)))
    np.testing.assert_array_equal(read_image(tmp_path / rows[2]["image"]), fake)
    write_manifest(tmp_path, rows)
    assert [r["video"] for r in read_manifest(tmp_path)] == [r["video"] for r in rows]
    with pytest.raises(ManifestError, match="written twice"):  # two inputs mapped to one id
        writer.write(face=fake, label="real", video="ffpp/original/634", frame=7, track=1)
    with pytest.raises(ManifestError, match="needs its MRI"):
        writer.write(face=fake, label="fake", video="x", frame=1)
    with pytest.raises(ManifestError, match="black MRI"):
        writer.write(face=real, label="real", video="y", mri=np.zeros((96, 96), np.float32))
    with pytest.raises(ManifestError, match="NaN"):
        writer.write(face=fake, label="fake", video="z", mri=np.full((96, 96), np.nan, np.float32))
    with pytest.raises(ManifestError, match="relative path"):
        writer.write(face=real, label="real", video="../escape")
    assert not (tmp_path.parent / "faces").exists()


def test_face_sets_are_read_without_mri(tmp_path, ff_examples):
    from mrigan.mri_df_format import MriDfWriter

    face = read_image(ff_examples / "ex_original.png")[100:196, 260:356]
    writer = MriDfWriter(tmp_path, with_mri=False)
    rows = [writer.write(face=face, label=label, video=f"dfdc/{label}", identity="p1", split="test",
                         coverage=0.25, detection_pass=p) for label, p in (("real", 1), ("fake", 2))]
    assert [r["mri"] for r in rows] == ["", ""] and not (tmp_path / "mri").exists()
    write_manifest(tmp_path, rows)
    with pytest.raises(ManifestError, match="mri"):
        read_manifest(tmp_path)  # an MRI-DF reader needs MRIs
    got = read_manifest(tmp_path, require_mri=False)
    assert [(r["label"], r["detection_pass"], r["coverage"]) for r in got] == [
        ("real", "1", "0.25"), ("fake", "2", "0.25")]
    (tmp_path / "manifest.csv").write_text("image,label,video\nfaces/a.png,real,a\n")
    with pytest.raises(ManifestError, match=r"missing column\(s\) \['identity', 'split'\]"):
        read_manifest(tmp_path, require_mri=False)
    (tmp_path / "manifest.csv").write_bytes("image,label,video,identity,split\né,real,a,b,test\n".encode("latin-1"))
    with pytest.raises(ManifestError, match="UTF-8"):
        read_manifest(tmp_path, require_mri=False)


def _writer_inputs(ff_examples):
    """Six (real, fake, MRI) crops of the FF++ example frames at different offsets."""
    from mrigan.perceptual import mri_map_np

    real_frame = read_image(ff_examples / "ex_original.png")
    fake_frame = read_image(ff_examples / "ex_deepfakes.png")
    out = []
    for k in range(6):
        y, x = 90 + 4 * k, 250 + 5 * k
        real, fake = real_frame[y:y + 96, x:x + 96], fake_frame[y:y + 96, x:x + 96]
        out.append((real, fake, mri_map_np(real, fake)))
    return out


def _write_all(writer, inputs) -> list[dict]:
    rows = []
    for k, (real, fake, mri) in enumerate(inputs):
        rows.append(writer.write(face=real, label="real", video="ffpp/original/634", frame=k))
        rows.append(writer.write(face=fake, label="fake", video="ffpp/Deepfakes/634_660", frame=k,
                                 mri=mri))
    return rows


def _files(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_background_saving_writes_the_same_bytes_as_synchronous_writing(tmp_path, ff_examples):
    import threading

    from mrigan.mri_df_format import MriDfWriter

    inputs = _writer_inputs(ff_examples)
    sync_rows = _write_all(MriDfWriter(tmp_path / "sync"), inputs)
    before = threading.active_count()
    writer = MriDfWriter(tmp_path / "background")
    with writer.saving_in_background(pending=2):  # 18 PNGs through a queue of 2
        assert threading.active_count() == before + 1
        bg_rows = _write_all(writer, inputs)
    assert threading.active_count() == before  # the block ends with the thread stopped
    assert bg_rows == sync_rows
    sync_files = _files(tmp_path / "sync")
    assert len(sync_files) == 19  # 6 real + 6 fake faces, 6 MRIs, the shared black MRI
    assert _files(tmp_path / "background") == sync_files


def test_a_failing_background_save_is_raised_here_naming_the_file(tmp_path, ff_examples):
    import threading

    from mrigan.mri_df_format import MriDfWriter

    inputs = _writer_inputs(ff_examples)
    root = tmp_path / "out"
    (root / "faces" / "ffpp" / "original").mkdir(parents=True)
    (root / "faces" / "ffpp" / "original" / "634").write_text("a file where a folder goes")
    before = threading.active_count()
    writer = MriDfWriter(root)
    with pytest.raises(FileExistsError) as raised:
        with writer.saving_in_background(pending=2):
            _write_all(writer, inputs)
    assert threading.active_count() == before
    assert raised.value.filename == str(root / "faces" / "ffpp" / "original" / "634")
    assert any("faces/ffpp/original/634/f000000_t0.png" in n for n in raised.value.__notes__)
    assert not (root / "faces" / "ffpp" / "Deepfakes").exists()  # nothing saved after the error

    # the caller's own error: raised as it is, the queued saves dropped, the thread stopped
    writer = MriDfWriter(tmp_path / "caller")
    with pytest.raises(KeyboardInterrupt, match="stop"):
        with writer.saving_in_background(pending=2):
            _write_all(writer, inputs[:1])
            raise KeyboardInterrupt("stop")
    assert threading.active_count() == before
