"""The perceptual metric through the pipeline: MRI-DF manifests record it (absent: ssim), a GAN
trained on one metric records it in its checkpoint, exported sidecar and header, and is refused
(one line, exit 2 at the command line) when scored against another metric's maps or trained
on an MRI-DF of another metric than its config says."""

from __future__ import annotations

import csv
import dataclasses
import json

import pytest
from _gan_setup import tiny_config, write_tiny_generator

from datasets_builders.synthetic import write_synthetic_mri_df
from mrigan.app.benchmark import evaluation
from mrigan.app.benchmark.config import BenchmarkConfig, EvalSettings
from mrigan.app.cli import main
from mrigan.inference import MRIGenerator, export_generator
from mrigan.mri_df_format import ManifestError, manifest_metric, read_manifest
from mrigan.train import train_gan


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("metric")
    return {m: write_synthetic_mri_df(base / m, n_faces=6, size=32, mri_metric=m, seed=2)
            for m in ("ssim", "gms")}


def test_manifests_record_the_metric_and_old_ones_read_as_ssim(roots, tmp_path):
    assert {m: manifest_metric(read_manifest(r)) for m, r in roots.items()} == {
        "ssim": "ssim", "gms": "gms"}
    rows = read_manifest(roots["gms"])
    fake = next(r for r in rows if r["label"] == "fake")
    assert fake["mri_metric"] == "gms"
    old = [{k: v for k, v in r.items() if k != "mri_metric"} for r in rows]
    assert manifest_metric(old) == "ssim"  # made before the column existed
    with pytest.raises(ManifestError, match="more than one perceptual metric"):
        manifest_metric([*old[:2], *rows[2:]])


def test_a_gms_generator_records_its_metric_and_refuses_ssim_maps(roots, tmp_path, capsys,
                                                                  one_torch_thread):
    cfg = tiny_config(roots["gms"], tmp_path, "gms_gan", max_steps=2, eval_every=2,
                      checkpoint_every=2)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, mri_metric="gms"))
    result = train_gan(cfg)
    weights, sidecar = export_generator(result.last_checkpoint, tmp_path / "g.safetensors")
    side = json.loads(sidecar.read_text())
    assert side["mri_metric"] == "gms" and "gms map" in side["output"]
    sidecar.unlink()  # the safetensors header alone says it too
    gen = MRIGenerator.load(weights, device="cpu")
    assert gen.mri_metric == "gms"
    assert MRIGenerator.load(write_tiny_generator(tmp_path / "old.safetensors", size=32),
                             device="cpu").mri_metric == "ssim"  # files before the choice

    bench = BenchmarkConfig(device="cpu", evaluate=EvalSettings(batch_size=4, bootstrap=0))
    ok = evaluation.gan_quality_stage(bench, str(weights), str(roots["gms"]), tmp_path / "q1")
    assert ok["fake"]["n"] > 0
    with pytest.raises(ManifestError) as info:
        evaluation.gan_quality_stage(bench, str(weights), str(roots["ssim"]), tmp_path / "q2")
    line = info.value.one_line()
    assert "\n" not in line and "ssim maps" in line and "gms" in line


def test_train_gan_refuses_an_mri_df_of_another_metric(roots, tmp_path, capsys):
    argv = ["train-gan", "--config", "configs/mri_gan_cpu.yaml", "--set",
            f"data.root={roots['gms']}", "--set", f"out_dir={tmp_path}"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "gms maps" in err[0] and "data.mri_metric" in err[0], err
    assert not any(tmp_path.iterdir())  # refused before any run folder


def test_old_manifest_without_the_column_is_ssim_on_disk(roots, tmp_path):
    rows = read_manifest(roots["ssim"])
    path = tmp_path / "manifest.csv"
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=[k for k in rows[0] if k != "mri_metric"],
                           extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    assert manifest_metric(read_manifest(tmp_path)) == "ssim"
