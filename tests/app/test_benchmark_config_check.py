"""The benchmark's whole config tree is checked when it is loaded: a misspelt component name or
key inside a nested stage config fails in seconds, before any stage folder exists (issue #22)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from detectors.backbones import BACKBONES
from detectors.config import DetectorConfig
from mrigan.app.benchmark import data as bench_data
from mrigan.app.benchmark import models as bench_models
from mrigan.app.benchmark.config import BenchmarkConfig, DetectorPair
from mrigan.app.benchmark.stages import fingerprint
from mrigan.app.cli import main
from mrigan.config import PROJECT_ROOT, ConfigError, load_config, replace_keys, save_config
from mrigan.models import GENERATORS
from mrigan.train import GanConfig

PRESETS = ("paper", "cpu", "default_generator", "folds_cpu")


@pytest.mark.parametrize("setting, named", [
    ("detector.set.model.backbone=nope", "'nope'"),
    ("detector.set.model.head=nope", "'nope'"),
    ("gan.set.model.generator=nope", "'nope'"),
    ("gan.set.train.nope=1", "nope"),
    ("detector.set.train.lr=-1", "-1"),
    # the typed form of the same sections
    ("gan.model.generator=nope", "'nope'"),
    ("gan.train.nope=1", "nope"),
    ("detector.plain.model.backbone=nope", "'nope'"),
    ("detector.mri.train.nope=1", "nope"),
    ("detector.nope=1", "nope"),
    ("gan.config=nope.yaml", "nope.yaml"),
    # the plain and MRI detectors share all but input and augmentations
    ("detector.plain.train.epochs=3", "train.epochs is 3 for the plain detector but 40"),
])
def test_a_bad_nested_setting_fails_before_any_stage(tmp_path, shared_data, capsys, setting,
                                                     named):
    out = tmp_path / "bench"
    start = time.monotonic()
    assert main(["benchmark", "--pairs", str(shared_data / "pairs" / "pairs.csv"),
                 "--preset", "cpu", "--out", str(out), "--set", setting]) == 2
    seconds = time.monotonic() - start
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and named in err[0], err
    assert not out.exists(), "no stage (nor the output folder) may exist after a config error"
    # no face was detected, nothing trained: well under the split stage's own time
    assert seconds < 30, seconds


def test_registered_names_are_checked_where_the_config_is_loaded():
    with pytest.raises(ConfigError, match=r"model\.backbone: unknown backbone 'nope'; known: "
                                          r".*mobilenet_v2.*timm:<name>"):
        load_config(DetectorConfig, None, ["model.backbone=nope"])
    with pytest.raises(ConfigError, match="unknown generator 'nope'"):
        load_config(GanConfig, None, {"model": {"generator": "nope"}})
    # every registered name passes, and the timm:<model> pattern (but not the bare prefix)
    for name in BACKBONES.names():
        assert load_config(DetectorConfig, None, [f"model.backbone={name}"]).model.backbone == name
    assert load_config(DetectorConfig, None, ["model.backbone=timm:resnet18"])
    with pytest.raises(ConfigError, match="unknown backbone 'timm:'"):
        load_config(DetectorConfig, None, {"model": {"backbone": "timm:"}})
    for name in GENERATORS.names():
        assert load_config(GanConfig, None, [f"model.generator={name}"]).model.generator == name


def test_a_component_registered_by_a_user_is_accepted_by_the_config(tmp_path: Path):
    """The check reads the registry when the config is built: a backbone a user registers
    (README: add a detector backbone) is a valid ``model.backbone`` from then on."""
    name = "user-test-backbone"
    with pytest.raises(ConfigError):
        load_config(DetectorConfig, None, [f"model.backbone={name}"])
    BACKBONES.register(name, lambda **kw: None)
    try:
        assert load_config(DetectorConfig, None, [f"model.backbone={name}"]).model.backbone == name
    finally:
        BACKBONES._items.pop(name)


def test_an_unknown_key_in_a_preset_file_fails_at_load_naming_file_and_key(tmp_path, shared_data,
                                                                           capsys):
    for section in ("gan: {train: {nope: 1}}", "detector: {set: {model: {nope: 1}}}",
                    "detector: {mri: {model: {backbone: nope}}}"):
        preset = tmp_path / "mine.yaml"
        preset.write_text(f"base: {PROJECT_ROOT / 'configs' / 'benchmark_cpu.yaml'}\n{section}\n")
        out = tmp_path / "bench"
        assert main(["benchmark", "--pairs", str(shared_data / "pairs" / "pairs.csv"),
                     "--config", str(preset), "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "mine.yaml" in err[0] and "nope" in err[0], err
        assert not out.exists()


#: each shipped preset's stage fingerprints (GAN, plain and MRI detector, MRI-DF builds, face
#: sets) as main printed them at 98a6c2f, before the gan/detector sections were typed: run
#: folders made then must still resume (mrigan.app.benchmark.stages refuses other settings)
PRESET_FINGERPRINTS = {
    "paper": {"gan": "468057ae0d392fe9", "plain": "a66fdc02215f2055", "mri": "42a0ef391e702774",
              "mri_df": "23368dbc0caf8bab", "faces": "230f5e0924689e3d"},
    "cpu": {"gan": "381a4f4a27280018", "plain": "65c1b887e552dc54", "mri": "f8f9338615822944",
            "mri_df": "4986ad29f0c58957", "faces": "e446244c229de32c"},
    "default_generator": {"gan": "87391a15a61f86b4", "plain": "ff3ac42c6408419a",
                          "mri": "a02a9ab47c8e2957", "mri_df": "1f8e3352f663f1e6",
                          "faces": "4d5791a29bf97a3f"},
    "folds_cpu": {"gan": "2a962a6adf4a09a7", "plain": "275a06094fdaa4ba",
                  "mri": "8180784ffbd4979e", "mri_df": "2960895f35f027ce",
                  "faces": "04506f726e00b535"},
}


def _fingerprints(cfg: BenchmarkConfig) -> dict:
    return {"gan": fingerprint(bench_models.gan_settings(cfg)),
            "plain": fingerprint(bench_models.detector_settings(cfg, "plain")),
            "mri": fingerprint(bench_models.detector_settings(cfg, "mri")),
            "mri_df": fingerprint(bench_data.mri_df_settings(cfg)),
            "faces": fingerprint(bench_data.face_set_settings(cfg))}


def _preset(name: str) -> BenchmarkConfig:
    return load_config(BenchmarkConfig, PROJECT_ROOT / "configs" / f"benchmark_{name}.yaml")


@pytest.mark.parametrize("preset", PRESETS)
def test_shipped_presets_keep_their_stage_fingerprints(preset):
    assert _fingerprints(_preset(preset)) == PRESET_FINGERPRINTS[preset]


#: the shipped paper / cpu / default_generator presets' gan and detector sections in the form
#: they had before the sections were typed (``config:`` + ``set:``, ``plain_config`` /
#: ``mri_config``); the other sections as shipped
OLD_PAPER = """name: benchmark_paper
split: {test: 0.25, val: 0.34, seed: 0}
data: {every: 10, max_frames: null, size: 256, max_side: 960, max_faces: 32}
gan:
  config: configs/mri_gan.yaml
  set: {}
detector:
  plain_config: configs/detector_plain.yaml
  mri_config: configs/detector_mri.yaml
  set:
    model: {backbone: efficientnet-b0, weights: null}
    data: {image_size: 224}
    train: {epochs: 20, batch_size: 32}
evaluate: {rule: count, bootstrap: 1000, batch_size: 64}
"""
OLD_CPU = """base: paper.yaml
name: benchmark_cpu
device: cpu
data: {every: 10, max_frames: 30, size: 128, max_side: 640, max_faces: 16}
gan:
  config: configs/mri_gan_cpu.yaml
  set:
    train: {max_steps: 1200, eval_every: 200, checkpoint_every: 200}
detector:
  set:
    model: {backbone: tiny-cnn, dropout: 0.0}
    data: {image_size: 64, workers: 0}
    train: {epochs: 40, batch_size: 16, lr: 1.0e-3, optimizer: adamw, weight_decay: 0.01,
            scheduler: cosine, label_smoothing: 0.0, bn_recalibrate: 8, device: cpu,
            precision: fp32}
evaluate: {bootstrap: 1000, batch_size: 32}
"""
OLD_DEFAULT_GENERATOR = """base: cpu.yaml
name: benchmark_default_generator
data: {max_frames: 25, self_blend_per_real: 1}
gan:
  config: configs/mri_gan_cpu.yaml
  set:
    model: {generator: unet-mobilenet_v2, encoder_weights: imagenet, mri_prior: true,
            image_size: 64, ngf: 16, ndf: 16}
    loss: {ssim_on: fakes}
    data: {eval_samples: 4000}
    augment: {enabled: true}
    train: {max_steps: 1500, eval_every: 50, checkpoint_every: 50, select_by: select}
detector:
  set:
    train: {epochs: 15}
"""


def _old_presets(folder: Path) -> dict[str, Path]:
    files = {"paper": OLD_PAPER, "cpu": OLD_CPU, "default_generator": OLD_DEFAULT_GENERATOR}
    for name, text in files.items():
        (folder / f"{name}.yaml").write_text(text)
    return {name: folder / f"{name}.yaml" for name in files}


@pytest.mark.parametrize("preset", ["paper", "cpu", "default_generator"])
def test_the_older_config_and_set_form_loads_to_the_same_typed_config(tmp_path, preset):
    old = load_config(BenchmarkConfig, _old_presets(tmp_path)[preset])
    new = _preset(preset)
    assert isinstance(old.gan, GanConfig) and isinstance(old.detector.mri, DetectorConfig)
    assert old == new
    assert _fingerprints(old) == PRESET_FINGERPRINTS[preset]


def test_a_later_layer_wins_in_either_form(tmp_path):
    """The older form is rewritten in the file (or --set) that wrote it, so the usual order of
    a base chain holds across forms: a preset over its base, --set over the preset."""
    old_cpu = _old_presets(tmp_path)["cpu"]
    for path in (old_cpu, PROJECT_ROOT / "configs" / "benchmark_cpu.yaml"):
        assert load_config(BenchmarkConfig, path).gan.train.max_steps == 1200
        for setting in ("gan.train.max_steps=5", "gan.set.train.max_steps=5"):
            assert load_config(BenchmarkConfig, path, [setting]).gan.train.max_steps == 5
        both = load_config(BenchmarkConfig, path, ["detector.set.train.lr=0.5"]).detector
        assert both.plain.train.lr == both.mri.train.lr == 0.5
        # each detector's own file: the plain one's face augmentations stay its own
        assert "jpeg" in both.plain.train.augment and "jpeg" not in both.mri.train.augment
    # an older-form child of the typed shipped preset, and a typed child of an older-form one
    child = tmp_path / "child.yaml"
    child.write_text(f"base: {PROJECT_ROOT / 'configs' / 'benchmark_cpu.yaml'}\n"
                     "gan: {set: {train: {max_steps: 7}}}\n")
    assert load_config(BenchmarkConfig, child).gan.train.max_steps == 7
    child.write_text(f"base: {old_cpu}\ngan: {{train: {{max_steps: 9}}}}\n"
                     "detector: {plain: {train: {augment: [flip]}}}\n")
    cfg = load_config(BenchmarkConfig, child)
    assert cfg.gan.train.max_steps == 9 and cfg.detector.plain.train.augment == ("flip",)


def test_a_run_folders_saved_config_loads_back_equal(tmp_path):
    """``<out>/config.yaml`` (written by the benchmark, read by ship-generator and the
    generator figures) holds the typed sections whole; an older run's holds config + set."""
    for name in PRESETS:
        cfg = _preset(name)
        save_config(cfg, tmp_path / "config.yaml")
        again = load_config(BenchmarkConfig, tmp_path / "config.yaml")
        assert again == cfg and _fingerprints(again) == PRESET_FINGERPRINTS[name]
    # --set of both detectors still reaches a saved (typed, per-detector) config
    changed = load_config(BenchmarkConfig, tmp_path / "config.yaml", ["detector.set.train.lr=0.5"])
    assert changed.detector.plain.train.lr == changed.detector.mri.train.lr == 0.5


def test_the_detectors_share_all_but_input_and_augmentations():
    pair = _preset("cpu").detector
    assert pair.plain.input.name == "plain" and pair.mri.input.name == "mri"
    with pytest.raises(ConfigError, match=r"model\.backbone is 'mobilenet_v2' for the plain "
                                          r"detector but 'tiny-cnn' for the MRI one"):
        DetectorPair(plain=replace_keys(pair.plain, {"model": {"backbone": "mobilenet_v2"}}),
                     mri=pair.mri)
    # augmentations are each input's own
    DetectorPair(plain=replace_keys(pair.plain, {"train": {"augment": ["flip"]}}), mri=pair.mri)
    # a GAN section built in Python is taken as it is; the stage adds only paths and device
    cfg = dataclasses.replace(_preset("cpu"), gan=replace_keys(_preset("cpu").gan,
                                                               {"train": {"max_steps": 3}}))
    assert bench_models.gan_settings(cfg)["train"]["max_steps"] == 3
