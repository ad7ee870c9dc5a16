"""The shared loop sections (mrigan.loop_config): one meaning and one default per field name
across the GAN, detector and realism configs; the GAN's older spellings (``max_steps: 0``)
load to the same run; ranges refused through the CLI in one line; and the settings
fingerprints of the shipped configs unchanged by the move."""

from __future__ import annotations

import dataclasses
import typing
from collections import Counter

import pytest
import torch

from datasets_builders.synthetic import write_synthetic_mri_df
from detectors.config import DetectorConfig, DetectorTrainConfig
from detectors.realism.config import RealismBaselineConfig, RealismConfig, RealismTrainConfig
from mrigan import fingerprint as fp
from mrigan.app.benchmark import models as bench_models
from mrigan.app.benchmark.config import BenchmarkConfig
from mrigan.app.cli import main
from mrigan.app.demo.config import DemoConfig
from mrigan.checkpoint import load_checkpoint
from mrigan.config import PROJECT_ROOT, ConfigError, from_dict, load_config
from mrigan.gan_config import GanConfig, GanTrainConfig, replace
from mrigan.loop_config import TASK_DEFAULTS, RunFolder, RunSettings, StepSettings
from mrigan.paired_augment import PairedAugmentConfig
from mrigan.train import train_gan
from tests._gan_setup import tiny_config

#: each task's train section and the shared section it derives from
SECTIONS = {GanTrainConfig: StepSettings, DetectorTrainConfig: StepSettings,
            RealismTrainConfig: RunSettings,
            GanConfig: RunFolder, DetectorConfig: RunFolder, RealismConfig: RunFolder}

#: field names that two or three train sections declare on their own, and why they stay apart
REPEATED_ON_PURPOSE = {
    "lr": "optimiser recipe; realism allows 0 (an untrained baseline), the GAN's is optim.lr",
    "weight_decay": "optimiser recipe (detector AdamW/Adam, realism AdamW), task defaults",
    "loss": "different things: detector bce|focal, realism a sum of named losses",
    "scheduler": "different choices: detector none|cosine (per step), realism "
                 "cosine|plateau|none (per epoch)",
    "select_by": "different figures per task (GAN held-out SSIM/AUC, realism score/srcc/rmse)",
    "channels_last": "a speed lever, not a loop setting; 'auto' is each task's measured choice",
}


def _meaning(f: dataclasses.Field) -> dict:
    """What a field means: its metadata less its history (recorded spellings, added later)."""
    return {k: v for k, v in f.metadata.items() if k not in fp.HISTORY_KEYS}


def test_shared_fields_have_one_type_meaning_and_default_in_every_task():
    for task, shared in SECTIONS.items():
        assert issubclass(task, shared), task
        mine = {f.name: f for f in dataclasses.fields(task)}
        hints, shared_hints = typing.get_type_hints(task), typing.get_type_hints(shared)
        for f in dataclasses.fields(shared):
            own = mine[f.name]
            where = f"{task.__name__}.{f.name}"
            assert hints[f.name] == shared_hints[f.name], where
            assert _meaning(own) == _meaning(f), where
            if f.name not in TASK_DEFAULTS:
                assert own.default == f.default, where
    # the step limit and step cadence: one default and one "off" spelling (None)
    for task in (GanTrainConfig, DetectorTrainConfig):
        cfg = task()
        assert cfg.max_steps is None and cfg.resume is True and cfg.max_minutes == 0.0
        off = task(max_steps=0, checkpoint_every=0)
        assert (off.max_steps, off.checkpoint_every) == (None, None)
    assert not hasattr(RealismTrainConfig(), "max_steps")  # realism trains whole epochs


def test_every_name_repeated_across_train_sections_is_shared_or_explained():
    tasks = (GanTrainConfig, DetectorTrainConfig, RealismTrainConfig)
    counts = Counter(f.name for t in tasks for f in dataclasses.fields(t))
    shared = {f.name for f in dataclasses.fields(StepSettings)}
    repeated = {name for name, n in counts.items() if n > 1}
    assert repeated - shared == set(REPEATED_ON_PURPOSE)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return write_synthetic_mri_df(tmp_path_factory.mktemp("mri_df"), n_faces=8, size=32)


def test_the_gans_old_zero_spellings_load_to_the_same_run(tiny_data, tmp_path, one_torch_thread):
    old = tiny_config(tiny_data, tmp_path, "old", max_steps=0, checkpoint_every=0, epochs=2,
                      eval_every=0)
    new = tiny_config(tiny_data, tmp_path, "new", max_steps=None, checkpoint_every=None,
                      epochs=2, eval_every=0)
    assert (old.train.max_steps, old.train.checkpoint_every) == (None, None)
    # the same settings fingerprint (recorded in the GAN's older spelling, 0)
    assert fp.settings(old, keep_runtime=True) == fp.settings(new, keep_runtime=True)
    assert fp.settings(new, keep_runtime=True)["train"]["max_steps"] == 0
    a, b = train_gan(old), train_gan(new)
    assert (a.step, a.epoch, a.stopped) == (b.step, b.epoch, "") and a.epoch == 2 and a.step > 2
    wa, wb = load_checkpoint(a.last_checkpoint), load_checkpoint(b.last_checkpoint)
    assert wa["step"] == a.step
    for k, v in wa["generator"].items():
        assert torch.equal(v, wb["generator"][k]), k
    # a checkpoint's stored config of the older form (0s, no train.resume) loads the same
    stored = dict(wa["config"])
    stored["train"] = {k: v for k, v in stored["train"].items() if k != "resume"}
    stored["train"].update(max_steps=0, checkpoint_every=0)
    again = from_dict(GanConfig, stored, where="last.pt")
    assert again == old and again.train.resume is True


def test_the_gan_reads_train_resume_as_the_other_tasks_do(tiny_data, tmp_path, one_torch_thread):
    cfg = tiny_config(tiny_data, tmp_path, "r", max_steps=2, eval_every=0, checkpoint_every=2)
    train_gan(cfg)
    more = replace(cfg, train={"max_steps": 4})
    steps: list[int] = []

    def count(trainer, step, terms):
        steps.append(step)

    train_gan(more, callbacks=[count])  # train.resume true (default): continues at step 2
    assert len(steps) == 2
    steps.clear()
    train_gan(replace(more, train={"resume": False}), callbacks=[count])  # starts anew
    assert len(steps) == 4


def test_old_yaml_zeros_and_nulls_mean_no_limit_for_the_detector_too(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text("base: " + str(PROJECT_ROOT / "configs" / "detector_plain_cpu.yaml") +
                    "\ntrain: {max_steps: 0, checkpoint_every: 0}\n", encoding="utf-8")
    cfg = load_config(DetectorConfig, path)
    assert (cfg.train.max_steps, cfg.train.checkpoint_every) == (None, None)
    assert cfg.train == load_config(DetectorConfig, "configs/detector_plain_cpu.yaml").train


@pytest.mark.parametrize("argv, key", [
    (["train-gan", "--config", "configs/mri_gan_cpu.yaml"], "train.checkpoint_every=-1"),
    (["train-gan", "--config", "configs/mri_gan_cpu.yaml"], "train.resume=maybe"),
    (["train-gan", "--config", "configs/mri_gan_cpu.yaml"], "augment.hflip_p=1.5"),
    (["train-detector", "--config", "configs/detector_plain_cpu.yaml"], "train.max_steps=-3"),
    (["train-detector", "--config", "configs/detector_plain_cpu.yaml"], "train.val_every=-1"),
    (["train-realism", "--config", "configs/realism_cpu.yaml"], "train.max_minutes=-1"),
    (["train-realism", "--config", "configs/realism_cpu.yaml"], "train.accumulation=0"),
    (["train-realism", "--config", "configs/realism_cpu.yaml"], "train.plateau_factor=1.0"),
    (["train-realism", "--config", "configs/realism_cpu.yaml"], "train.scheduler=step"),
    (["train-realism", "--config", "configs/realism_cpu.yaml"], "da_clip.top_k=0"),
])
def test_a_value_out_of_range_is_one_line_and_exit_2(argv, key, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = main([*argv, "--set", key])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"mrigan {argv[0]}: ") and key.split("=")[0] in err[0], err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_the_train_sections_not_checked_before_are_range_checked_when_built_directly():
    with pytest.raises(ConfigError, match="PairedAugmentConfig.hue: 0.7 is above the maximum"):
        PairedAugmentConfig(hue=0.7)
    with pytest.raises(ConfigError, match="RealismTrainConfig.batch_size: 0 is below"):
        RealismTrainConfig(batch_size=0)
    with pytest.raises(ConfigError, match="RealismTrainConfig.select_by: 'nope' is not one of"):
        RealismTrainConfig(select_by="nope")
    with pytest.raises(ConfigError, match="RealismBaselineConfig.draws"):
        RealismBaselineConfig(draws=0)
    assert RealismTrainConfig(lr=0.0).lr == 0.0  # realism's untrained baseline stays allowed


#: settings fingerprints of the shipped configs as main wrote them before the shared sections
#: (commit 98a6c2f, first 16 hex digits): benchmark stages (GAN, plain and MRI detector stage
#: records, mrigan.app.benchmark.models), the GAN's settings with runtime keys (its only
#: consumer, the benchmark's GAN stage, keeps them), the detectors' and realism's with and
#: without runtime keys (benchmark stages; repeat series, detectors.repeats.settings_of)
PINNED = {
    'benchmark_cpu:gan': '381a4f4a27280018',
    'benchmark_cpu:detector_plain': '65c1b887e552dc54',
    'benchmark_cpu:detector_mri': 'f8f9338615822944',
    'benchmark_default_generator:gan': '87391a15a61f86b4',
    'benchmark_default_generator:detector_plain': 'ff3ac42c6408419a',
    'benchmark_default_generator:detector_mri': 'a02a9ab47c8e2957',
    'benchmark_folds_cpu:gan': '2a962a6adf4a09a7',
    'benchmark_folds_cpu:detector_plain': '275a06094fdaa4ba',
    'benchmark_folds_cpu:detector_mri': '8180784ffbd4979e',
    'benchmark_paper:gan': '468057ae0d392fe9',
    'benchmark_paper:detector_plain': 'a66fdc02215f2055',
    'benchmark_paper:detector_mri': '42a0ef391e702774',
    'demo:gan': '79abad2a0f0a15b8',
    'detector_gradual_unfreeze': ('7c0a4117c1f30b27', '3c39682fc433233a'),
    'detector_mri': ('68cdd8b4c7b1340c', 'd1adf4ed0793e59a'),
    'detector_mri_cpu': ('838b3fd54eaad178', 'd69cb47d818082c7'),
    'detector_plain': ('9d94d124ceef9a10', '3fa19329ba1f2c2e'),
    'detector_plain_cpu': ('50a5eb11797f2878', '7bbba69f774c8abc'),
    'detector_xception_jpeg_study': ('902a705a0a2564e7', '2d1e45861df7034e'),
    'mri_gan': '7552d1764f93b369',
    'mri_gan_cpu': 'b3d74dddd4a50c02',
    'mri_gan_paper_text': 'c870cfafd7f0cdea',
    'realism': ('132454b04fbc38f2', '4c8a2360a8cd89a3'),
    'realism_cpu': ('6554681fd1022ce2', 'a22d649bf0ac9f5f'),
    'realism_da_clip': ('3a7487fb2e88e1ea', 'a7bd59a73c343a2c'),
    'realism_ensemble_paper': ('4eef468714caa64f', '49d876fb82bed4da'),
    'GanConfig()': '671c26a9d5855185',
    'DetectorConfig()': ('7a23348cdcac9310', '7f23bb6354f57ddc'),
    'RealismConfig()': ('ebbf0659b63d5b6e', '9a7f846e2844678e'),
}


def _fingerprints() -> dict:
    classes = {"mri_gan": GanConfig, "detector_evaluate": None, "detector": DetectorConfig,
               "realism": RealismConfig, "benchmark": BenchmarkConfig, "demo": DemoConfig}
    out: dict = {}  # build_*, face_set: no training config

    def both(cfg):
        return (fp.digest(fp.settings(cfg))[:16],
                fp.digest(fp.settings(cfg, keep_runtime=True))[:16])

    for path in sorted((PROJECT_ROOT / "configs").glob("*.yaml")):
        cls = next((c for p, c in classes.items() if path.stem.startswith(p)), None)
        if cls is None:
            continue
        cfg = load_config(cls, path)
        if cls is BenchmarkConfig:
            out[f"{path.stem}:gan"] = fp.digest(bench_models.gan_settings(cfg), length=16,
                                                 compact=False)
            for kind in ("plain", "mri"):
                out[f"{path.stem}:detector_{kind}"] = fp.digest(
                    bench_models.detector_settings(cfg, kind), length=16, compact=False)
        elif cls is DemoConfig:
            out["demo:gan"] = both(cfg.gan)[1]
        else:
            out[path.stem] = both(cfg)[1] if cls is GanConfig else both(cfg)
    out["GanConfig()"] = both(GanConfig())[1]
    out["DetectorConfig()"] = both(DetectorConfig())
    out["RealismConfig()"] = both(RealismConfig())
    return out


def test_the_shipped_configs_fingerprints_are_unchanged():
    now = _fingerprints()
    assert set(now) == set(PINNED)
    assert {k: v for k, v in now.items() if PINNED[k] != v} == {}
