"""Issue 25 family 3: listings and manifests that lie. On a real MRI-DF built from FF++ videos:
a fake listed as its own original (or with a listed fake as its original) is skipped and counted,
never written as real rows with black MRIs; and a manifest row whose ``image`` / ``mri`` points
outside the data root (``../x.png``, an absolute path) makes every reader (``read_manifest``,
so the GAN trainer, the detectors, the realism clips) refuse the manifest naming the row."""

from __future__ import annotations

import shutil

import pytest

from datasets_builders.faces import FaceDetector
from datasets_builders.mri_df import (
    BuildConfig,
    BuildSourceConfig,
    FaceDetectionConfig,
    build_mri_df,
)
from mrigan.app.cli import main as cli
from mrigan.mri_df_format import ManifestError, MriDfDataset, read_manifest

FACES = FaceDetectionConfig(device="cpu", max_side=320, batch_size=4, size=64)


@pytest.fixture(scope="module")
def built(ffpp_root, tmp_path_factory):
    base = tmp_path_factory.mktemp("manifest_paths")
    orig = ffpp_root / "original_sequences/youtube/c23/videos"
    man = ffpp_root / "manipulated_sequences"
    csv = base / "list.csv"
    csv.write_text("path,label,original\n"
                   f"{man / 'Deepfakes/c23/videos/519_515.mp4'},fake,{orig / '519.mp4'}\n"
                   f"{man / 'FaceSwap/c23/videos/634_660.mp4'},fake,"
                   f"{man / 'FaceSwap/c23/videos/634_660.mp4'}\n"
                   f"{man / 'NeuralTextures/c23/videos/004_982.mp4'},fake,"
                   f"{man / 'Deepfakes/c23/videos/519_515.mp4'}\n")
    cfg = BuildConfig(out=str(base / "mri_df"), sources=(BuildSourceConfig(kind="csv",
                      root=str(csv)),), progress=False, faces=FACES, every=100, max_frames=1)
    detector = FaceDetector(device="cpu", max_side=320, batch_size=4)
    summary = build_mri_df(cfg, log=lambda _l: None, detector=detector)
    return base, summary


def test_a_fake_listed_as_its_own_original_is_skipped_and_counted(built):
    base, summary = built
    assert summary.skipped == {"fake listed as its own original": 1,
                               "original is listed as a fake": 1}
    rows = read_manifest(base / "mri_df")
    videos = {(r["video"].rsplit("/", 1)[1], r["label"]) for r in rows}
    assert videos == {("519", "real"), ("519_515", "fake")}  # nothing of 634_660 or 004_982
    assert all(r["mri"].startswith("mri/black") == (r["label"] == "real") for r in rows)


@pytest.mark.parametrize("bad", ["../outside.png", "/etc/passwd", "faces/../../x.png"])
def test_a_manifest_row_outside_the_root_is_refused_naming_the_row(built, tmp_path, bad, capsys):
    base, _ = built
    root = tmp_path / "mri_df"
    shutil.copytree(base / "mri_df", root)
    manifest = root / "manifest.csv"
    lines = manifest.read_text().splitlines()
    fake = next(i for i, line in enumerate(lines) if ",fake," in line)
    column = "mri" if bad.startswith("faces") else "image"
    cells = lines[fake].split(",")
    cells[0 if column == "image" else 1] = bad
    lines[fake] = ",".join(cells)
    manifest.write_text("\n".join(lines) + "\n")
    with pytest.raises(ManifestError, match=f"row {fake + 1}: {column} '{bad}' lies outside"):
        MriDfDataset(root)
    code = cli(["train-gan", "--config", "configs/mri_gan_cpu.yaml", "--set", f"data.root={root}",
                "--set", f"out_dir={tmp_path}/runs", "--set", "train.max_steps=1",
                "--set", "model.image_size=64"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and f"row {fake + 1}" in err[0] and bad in err[0], err
    assert not (tmp_path / "runs").exists()
