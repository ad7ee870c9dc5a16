"""README guide "Add a perceptual metric", done exactly as written: register one function in
``mrigan.perceptual.DISSIMILARITIES`` and name it in the build config (``mri_metric``). The
MRI-DF builder (``mrigan build-dataset``) then writes that metric's maps, records it in every
manifest row and in the build's fingerprint, and refuses to resume the folder with another
metric."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mrigan import perceptual
from mrigan.app.cli import main
from mrigan.fileio import read_image
from mrigan.mri_df_format import manifest_metric, read_manifest


@pytest.fixture
def absdiff():
    """The guide's metric: the absolute pixel difference, scaled to [0, 1]."""

    @perceptual.DISSIMILARITIES.register("absdiff")
    def absdiff_map(real: torch.Tensor, fake: torch.Tensor, *, data_range: float) -> torch.Tensor:
        return ((real.float() - fake.float()).abs() / data_range).clamp(0.0, 1.0)

    yield "absdiff"
    perceptual.DISSIMILARITIES.unregister("absdiff")


def test_a_registered_metric_builds_an_mri_df(absdiff, tmp_path, ff_examples, capsys):
    csv = tmp_path / "pairs.csv"
    csv.write_text("path,label,original,method\n"
                   f"{ff_examples / 'ex_deepfakes.png'},fake,{ff_examples / 'ex_original.png'},"
                   "Deepfakes\n")
    out = tmp_path / "mri_df"
    argv = ["build-dataset", "--csv", str(csv), "--out", str(out), "--size", "96",
            "--no-progress", "--set", "faces.device=cpu", "--set", "faces.max_side=320"]
    assert main([*argv, "--set", f"mri_metric={absdiff}"]) == 0
    rows = read_manifest(out)
    assert {r["mri_metric"] for r in rows} == {"absdiff"} and manifest_metric(rows) == "absdiff"
    real = next(r for r in rows if r["label"] == "real")
    fake = next(r for r in rows if r["label"] == "fake")
    diff = np.abs(read_image(out / real["image"]).astype(np.int16)
                  - read_image(out / fake["image"]).astype(np.int16)).astype(np.uint8)
    np.testing.assert_array_equal(read_image(out / fake["mri"]), diff)  # the metric's map
    assert diff.max() > 0 and not np.array_equal(  # and not the SSIM map
        read_image(out / fake["mri"]),
        perceptual.mri_to_uint8(perceptual.mri_map_np(read_image(out / real["image"]),
                                                      read_image(out / fake["image"]))))
    assert json.loads((out / "fingerprint.json").read_text())["mri_metric"] == "absdiff"

    capsys.readouterr()
    assert main(argv) == 2  # the same folder with the default metric (ssim): refused
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "mri_metric ('absdiff' -> '-')" in err[0], err


def test_an_unknown_metric_is_one_line_before_any_work(tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["build-dataset", "--csv", str(tmp_path / "x.csv"), "--out", str(out),
                 "--set", "mri_metric=nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'nope'" in err[0] and "ssim" in err[0], err
    assert not out.exists()
