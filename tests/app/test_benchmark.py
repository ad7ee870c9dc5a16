"""``mrigan benchmark`` end to end on the shared real pairs (4 FF++ identities), tiny settings:
the paper's table for plain vs MRI, no test identity in any training stage, resume skips
every stage and gives the same table, a changed setting is refused naming its key."""

from __future__ import annotations

import csv
import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
from _benchmark_setup import TINY, labelled_pair_csv
from PIL import Image

from datasets_builders.build_config import BuildSourceConfig
from detectors.aggregate import apply_rule, group_by_video
from detectors.config import DetectorConfig
from detectors.metrics import binary_report, bootstrap_ci, report_with_ci
from detectors.train import split_rows
from mrigan.app.benchmark import data as data_mod
from mrigan.app.benchmark.config import BenchmarkConfig, DataSettings, EvalSettings, SplitSettings
from mrigan.app.benchmark.evaluation import VIDEO_KEYS, video_columns
from mrigan.app.benchmark.generator_figures import beats, generator_figures
from mrigan.app.benchmark.generator_figures import markdown as figures_markdown
from mrigan.app.benchmark.generator_score import MRI_THRESHOLDS
from mrigan.app.benchmark.split import split_stage
from mrigan.app.benchmark.stages import STAGE_FILE
from mrigan.app.cli import main
from mrigan.config import ConfigError, load_config, replace_keys
from mrigan.inference import MRIGenerator
from mrigan.mri_df_format import read_manifest

STAGES = ("split", "mri_df", "heldout_mri_df", "gan", "export", "detector_plain", "detector_mri",
          "faces_validation", "faces_test", "faces_labelled", "eval_plain", "eval_mri", "eval_mri_mean", "gan_quality", "report")
PAPER_COLUMNS = ("accuracy", "auc", "precision", "recall", "f1", "eer", "ap")


def _argv(shared_data: Path, out: Path, extra=()) -> list[str]:
    argv = ["benchmark", "--pairs", str(shared_data / "pairs" / "pairs.csv"), "--preset", "cpu",
            "--labelled", str(labelled_pair_csv(shared_data, out.parent)), "--out", str(out)]
    for item in (*TINY, *extra):
        argv += ["--set", item]
    return argv


def test_tiny_benchmark_end_to_end_resume_and_refusal(tmp_path, shared_data, ff_examples, capsys,
                                                      two_torch_threads):
    out = tmp_path / "bench"
    assert main(_argv(shared_data, out)) == 0
    first = capsys.readouterr().out
    summary = json.loads((out / "report" / "benchmark.json").read_text())

    # the table: both detectors and the generator alone, the paper's columns, with n and CIs
    rows = summary["table"]
    assert {(r["test_set"], r["detector"]) for r in rows} == {
        (s, d) for s in ("test", "labelled") for d in ("plain", "mri", "mri_mean")}
    for r in rows:
        for key in PAPER_COLUMNS:
            assert key in r and key in r["ci95"]
        assert r["videos"] == 2 and r["fake_videos"] == 1 and r["identities"] == 1
    for name in ("benchmark.md", "benchmark.html", "roc_test.png", "roc_labelled.png"):
        assert (out / "report" / name).stat().st_size > 0
    md = (out / "report" / "benchmark.md").read_text()
    assert "| Accuracy | AUC | Precision | Recall | F1 | EER | AP |" in md

    # no test identity in any training stage
    split = json.loads((out / "split" / "split.json").read_text())["splits"]
    test_ids = set(split["test"]["identities"])
    assert len(test_ids) == 1 and not test_ids & set(split["train"]["identities"])
    mri_df = read_manifest(out / "mri_df" / "data")
    assert mri_df and not test_ids & {r["identity"] for r in mri_df}
    assert {r["identity"] for r in mri_df if r["split"] == "val"} == set(split["val"]["identities"])
    gan_cfg = (out / "gan" / "run" / "config.yaml").read_text()
    assert str(out / "mri_df" / "data") in gan_cfg
    for kind in ("plain", "mri"):
        dcfg = load_config(DetectorConfig, out / f"detector_{kind}" / "run" / "config.yaml")
        train_rows, val_rows = split_rows(dcfg)
        assert train_rows and val_rows
        assert not test_ids & {r["identity"] for r in train_rows + val_rows}
    # ... while the test face set is exactly the held-out identity's two videos, and the
    # validation face set (the video rule's only data) the validation identity's
    test_faces = read_manifest(summary["face_sets"]["test"]["root"], require_mri=False)
    assert {r["identity"] for r in test_faces} == test_ids
    assert len({r["video"] for r in test_faces}) == 2
    val_faces = read_manifest(summary["face_sets"]["validation"]["root"], require_mri=False)
    assert {r["identity"] for r in val_faces} == set(split["val"]["identities"])

    # the generator alone (mri_mean): a face's score is the exported generator's mean MRI
    # (recomputed here with MRIGenerator), its rule chosen on the 2 validation videos
    mm = summary["evaluations"]["mri_mean"]
    assert mm["aggregation"]["rule"] == "count"
    assert mm["aggregation"]["params"]["threshold"] in MRI_THRESHOLDS
    record = json.loads((out / "eval_mri_mean" / STAGE_FILE).read_text())
    assert record["result"]["validation_videos"] == 2
    gen = MRIGenerator.load(out / "export" / "generator.safetensors", device="cpu")
    faces_csv = out / "eval_mri_mean" / "report" / "predictions" / "test_faces.csv"
    scored = {r["image"]: float(r["p_fake"]) for r in csv.DictReader(faces_csv.open())}
    assert {Path(r["image"]).name for r in test_faces} == {Path(i).name for i in scored}
    root = Path(summary["face_sets"]["test"]["root"])
    for image, score in list(scored.items())[:3]:
        face = np.asarray(Image.open(root / image).convert("RGB"))
        assert score == pytest.approx(float(gen.predict(face).mean()), abs=1e-5)
    assert "mri_mean" in md and "roc_test.png" in md

    # GAN quality on held-out identities, with the all-black baseline beside it
    q = summary["gan_quality"]
    assert q["fake"]["n"] > 0 and q["real"]["n"] > 0
    assert q["real"]["mean_ssim_black"] == pytest.approx(1.0, abs=1e-6)
    assert q["fake"]["mean_ssim_black"] < 1.0
    assert set(q["identities"]) == test_ids

    # ship-generator: the run's generator as fp16 weights whose model card holds THIS run's
    # held-out figures (mri_mean rows, GAN quality) and the threshold chosen on validation
    shipped = tmp_path / "shipped" / "g.safetensors"
    assert main(["ship-generator", str(out), "--out", str(shipped)]) == 0
    assert "wrote" in capsys.readouterr().out
    side = json.loads(shipped.with_suffix(".json").read_text())
    card = side["model_card"]
    assert side["dtype"] == "float16"
    for r in rows:
        if r["detector"] == "mri_mean":
            fig = card["video_level"][r["test_set"]]
            assert fig["videos"] == r["videos"]
            assert fig["auc"] == pytest.approx(r["auc"], abs=1e-4)
    assert card["verdict"]["mri_threshold"] == mm["aggregation"]["params"]["threshold"]
    assert card["held_out"]["mean_ssim"]["fake"]["generator"] == pytest.approx(
        q["fake"]["mean_ssim"], abs=1e-4)
    assert card["training_data"]["held_out_identities"] == sorted(test_ids)
    assert not test_ids & set(card["training_data"]["train_identities"])
    assert card["limits"] and all(isinstance(s, str) for s in card["limits"])
    assert 0 <= card["settings"]["fp16_max_mri_difference"] < 0.05
    mean_mri = card["held_out"]["mean_mri"]
    assert mean_mri["fake"]["n"] + mean_mri["real"]["n"] == q["fake"]["n"] + q["real"]["n"]
    assert mean_mri["fake"]["true"] > mean_mri["real"]["true"]  # fakes differ from originals
    # localization beside the baselines (constant maps: face AUC 0.5; black: pixel AUC 0.5)
    loc = card["held_out"]["localization"]
    assert loc["n"] == mean_mri["fake"]["n"] + mean_mri["real"]["n"]
    assert loc["black_pixel_auc"] == 0.5 and loc["mean_map_face_auc"] == 0.5
    assert 0.0 <= loc["pixel_auc"] <= 1.0 and 0.0 <= loc["select"] <= 1.0
    assert MRIGenerator.load(shipped, device="cpu").image_size == 32
    # the card names the generator and its encoder's weights (none: the paper's U-Net), and the
    # shipped sidecar names no folder of this machine: paths relative to the run, or hashed
    assert card["settings"]["generator"] == "mrigan" and card["settings"]["encoder_weights"] is None
    assert side["source_checkpoint"] == "checkpoints/best.pt"
    assert side["training_config"]["data"]["root"] == "../../mri_df/data"
    assert str(tmp_path) not in shipped.with_suffix(".json").read_text()

    # generator_figures on this run: the run's own export scored again gives the benchmark's
    # mri_mean AUCs; the localization baselines are the constant maps'; nothing beats itself
    export = str(out / "export" / "generator.safetensors")
    figs = generator_figures(out, {"a": export, "b": export}, tmp_path / "figs", ff_examples,
                             log=lambda _: None)
    a = figs["generators"]["a"]
    for r in rows:
        if r["detector"] == "mri_mean":
            assert a["video"][r["test_set"]]["auc"] == pytest.approx(r["auc"], abs=1e-9)
            assert a["video"][r["test_set"]]["videos"] == r["videos"]
    assert a["test"]["identities"] == sorted(test_ids) and a["test"]["n"] == q["fake"]["n"] + \
        q["real"]["n"]
    assert figs["baselines"]["test"]["black"]["pixel_auc"] == 0.5
    assert figs["baselines"]["test"]["mean_map"]["face_auc"] == 0.5
    assert set(a["ff_examples"]) == {"deepfakes", "neuraltextures"}
    assert not any(beats(figs, "a", "b").values())
    assert "| a (32 px) |" in figures_markdown(figs)

    # a rerun skips every stage and reproduces the table
    assert main(_argv(shared_data, out)) == 0
    second = capsys.readouterr().out
    for stage in STAGES:
        assert f"[{stage}] done earlier with the same settings: skipped" in second, stage
        assert f"[{stage}] running" in first
        assert json.loads((out / stage / STAGE_FILE).read_text())["done"]
    again = json.loads((out / "report" / "benchmark.json").read_text())
    assert again["table"] == rows

    # a changed setting is refused naming the key; nothing is redone
    assert main(_argv(shared_data, out, ["data.every=99"])) == 2
    err = capsys.readouterr().err
    assert "stage 'mri_df'" in err and "every" in err
    assert main(_argv(shared_data, out, ["detector.set.train.lr=0.5"])) == 2
    err = capsys.readouterr().err
    assert "detector_plain" in err and "detector.train.lr" in err


def test_split_stage_reads_dataset_layouts(tmp_path, shared_data):
    """``sources:`` (here the FF++ folder layout) instead of a pairs CSV: three identities go
    to three splits, and the training CSV lists no test video."""
    cfg = BenchmarkConfig(sources=(BuildSourceConfig(kind="ffpp", root=str(shared_data / "ffpp"),
                                                options={"compression": "c23"}),))
    result = split_stage(cfg, tmp_path)
    splits = result["splits"]
    ids = {k: set(v["identities"]) for k, v in splits.items()}
    assert all(len(v) >= 1 for v in ids.values())
    assert not (ids["train"] & ids["test"]) and not (ids["val"] & ids["test"])
    trainval = (tmp_path / "trainval.csv").read_text()
    for video in splits["test"]["videos"]:
        assert Path(video).name not in trainval
    assert splits["test"]["fakes"] >= 1


@pytest.mark.parametrize("preset", ["cpu", "paper", "default_generator"])
def test_presets_resolve_both_detectors_with_one_backbone_and_budget(preset):
    """Each preset's GAN and detector configs load; plain and MRI share backbone, weights,
    size and budget, and differ in their input."""
    from mrigan.app.benchmark import models
    from mrigan.config import PROJECT_ROOT

    cfg = load_config(BenchmarkConfig, PROJECT_ROOT / "configs" / f"benchmark_{preset}.yaml")
    assert cfg.name == f"benchmark_{preset}"
    gan = models.gan_settings(cfg)
    assert gan["model"]["image_size"] == {"cpu": 64, "paper": 256, "default_generator": 64}[preset]
    plain, mri = (models.detector_settings(cfg, k) for k in ("plain", "mri"))
    assert plain["model"] == mri["model"] and plain["data"] == mri["data"]
    budget = ("epochs", "max_steps", "batch_size", "lr", "seed", "loss")
    assert [plain["train"][k] for k in budget] == [mri["train"][k] for k in budget]
    assert (plain["input"]["name"], mri["input"]["name"]) == ("plain", "mri")


def test_gan_settings_added_later_keep_older_runs_resumable():
    """Settings the GAN gained after benchmark runs existed (pretrained encoders, recipe options,
    select_by) are left out of the GAN stage's settings at their older behaviour, so such a run
    folder still resumes; another value is in them (and refused as a change)."""
    from mrigan.app.benchmark import models
    from mrigan.config import PROJECT_ROOT

    cfg = load_config(BenchmarkConfig, PROJECT_ROOT / "configs" / "benchmark_paper.yaml")
    gan = models.gan_settings(cfg)
    for section, key in models.GAN_ADDED_LATER:
        assert key not in gan[section], (section, key)
    assert "ngf" in gan["model"] and "tau" in gan["loss"]  # the rest is all there
    changed = dataclasses.replace(cfg, gan=replace_keys(cfg.gan, {"loss": {"ssim_on": "fakes"}}))
    assert models.gan_settings(changed)["loss"]["ssim_on"] == "fakes"


def test_mri_df_builds_detect_faces_on_every_sampled_frame_unless_asked(tmp_path, monkeypatch):
    """The benchmark's MRI-DF builds run MTCNN on every sampled frame (the paper; the shipped
    generator's card was made so), not the builder's faster default; a run made before the
    setting existed keeps its stage fingerprint (the key is left out at 1)."""
    cfg = load_config(BenchmarkConfig, Path(__file__).parents[2] / "configs/benchmark_cpu.yaml")
    assert cfg.data.detect_every == 1 and "detect_every" not in data_mod.mri_df_settings(cfg)
    three = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, detect_every=3))
    assert data_mod.mri_df_settings(three)["detect_every"] == 3
    seen = []

    def spy(build, log=print):
        seen.append(build)
        raise RuntimeError("stop after the config is made")

    monkeypatch.setattr(data_mod, "build_mri_df", spy)
    for c in (cfg, three):
        with pytest.raises(RuntimeError, match="stop after"):
            data_mod.build_stage(c, str(tmp_path / "x.csv"), tmp_path / "mri_df", val=0.3)
    assert [b.detect_every for b in seen] == [1, 3]
    with pytest.raises(ConfigError, match="detect_every"):
        DataSettings(detect_every=0)


def test_self_blends_go_into_the_training_build_only_and_its_fingerprint(tmp_path, monkeypatch):
    """data.self_blend_per_real reaches the training identities' MRI-DF build (its train split)
    and never the held-out one; off (0), the stage settings of earlier runs are unchanged."""
    cfg = load_config(BenchmarkConfig, Path(__file__).parents[2] / "configs/benchmark_cpu.yaml")
    assert cfg.data.self_blend_per_real == 0 and data_mod.self_blend_settings(cfg) == {}
    two = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, self_blend_per_real=2))
    assert data_mod.self_blend_settings(two) == {"self_blend_per_real": 2}
    assert "self_blend_per_real" not in data_mod.mri_df_settings(two)  # shared with held-out
    seen = []

    def spy(build, log=print):
        seen.append(build.self_blend)
        raise RuntimeError("stop after the config is made")

    monkeypatch.setattr(data_mod, "build_mri_df", spy)
    for c, blend in ((two, True), (two, False), (cfg, True)):
        with pytest.raises(RuntimeError, match="stop after"):
            data_mod.build_stage(c, str(tmp_path / "x.csv"), tmp_path / "mri_df", val=0.3,
                                 self_blend=blend)
    assert [(b.per_real, b.splits) for b in seen] == [(2, ("train",)), (0, ("train",)),
                                                      (0, ("train",))]


def test_video_columns_match_the_mri_mean_rows_former_computation():
    """The mri_mean row and the detector rows share one video report (report_with_ci +
    video_columns); figures equal what the mri_mean stage computed on its own before."""
    rng = np.random.default_rng(7)
    units = [{"video": f"v{i // 3}", "label": (i // 3) % 2} for i in range(60)]
    scores = np.clip(rng.random(60) * 0.2 + 0.08 * np.array([u["label"] for u in units]), 0, 1)
    video = apply_rule("count", group_by_video(units, scores), {"threshold": 0.12, "fraction": 0.5})
    for n_boot in (30, 0):
        rep = binary_report(video.labels, video.scores, y_pred=video.fake)
        ci = ({k: list(v) for k, v in bootstrap_ci(video.labels, video.scores, n_boot=n_boot,
                                                   y_pred=video.fake).items()}
              if n_boot > 0 else {})
        ci.setdefault("recall", ci.get("tpr"))
        before = {"video": {k: rep[k] for k in VIDEO_KEYS},
                  "ci95": {k: ci.get(k) for k in VIDEO_KEYS[:7]}}
        now = video_columns(report_with_ci(video.labels, video.scores, y_pred=video.fake,
                                           n_boot=n_boot))
        assert json.dumps(now, sort_keys=True) == json.dumps(before, sort_keys=True)
        assert (now["ci95"]["recall"] is None) == (n_boot == 0)


@pytest.mark.parametrize("cls, section, key, value, tail", [
    (SplitSettings, "split", "test", 1.0, "test: 1.0 must be less than 1"),
    (SplitSettings, "split", "val", 0.0, "val: 0.0 must be greater than 0"),
    (DataSettings, "data", "every", 0, "every: 0 is below the minimum 1"),
    (DataSettings, "data", "max_frames", 0, "max_frames: 0 is below the minimum 1"),
    (DataSettings, "data", "size", 8, "size: 8 is below the minimum 16"),
    (DataSettings, "data", "max_faces", 0, "max_faces: 0 is below the minimum 1"),
    (DataSettings, "data", "self_blend_per_real", -1,
     "self_blend_per_real: -1 is below the minimum 0"),
    (EvalSettings, "evaluate", "rule", "max", "rule: 'max' is not one of"),
    (EvalSettings, "evaluate", "bootstrap", -1, "bootstrap: -1 is below the minimum 0"),
])
def test_benchmark_ranges_are_refused_from_yaml_and_built_directly(cls, section, key, value, tail):
    """The benchmark sections' ranges are bounds metadata: the preset file and the key from
    YAML, the class and the field when built in Python; the same ConfigError."""
    with pytest.raises(ConfigError, match=re.escape(f"{cls.__name__}.{tail}")):
        cls(**{key: value})
    with pytest.raises(ConfigError, match=re.escape(f"benchmark_cpu.yaml: {section}.{tail}")):
        load_config(BenchmarkConfig, "configs/benchmark_cpu.yaml", [f"{section}.{key}={value}"])
