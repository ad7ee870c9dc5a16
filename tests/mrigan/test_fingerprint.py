"""One settings-fingerprint mechanism (mrigan.fingerprint): field metadata says which fields
shape an output; builders, benchmark stages and repeat series all read it, and the fingerprints
of outputs made before a field existed still match while it holds its older value."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

import pytest

from datasets_builders.build_config import BuildConfig, BuildSelfBlendConfig, BuildSourceConfig
from datasets_builders.build_faces import BuildFaceSetConfig
from datasets_builders.build_records import check_fingerprint, fingerprint
from detectors.config import DetectorConfig
from detectors.repeats import settings_of
from mrigan import fingerprint as fp
from mrigan.app.benchmark import data as bench_data
from mrigan.app.benchmark import models as bench_models
from mrigan.app.benchmark.config import BenchmarkConfig, DataSettings
from mrigan.config import ConfigError


@dataclass(frozen=True)
class Inner:
    size: int = 64
    device: str = field(default="cpu", metadata=fp.runtime())
    new_knob: float = field(default=0.0, metadata=fp.added_later(0.0))


@dataclass(frozen=True)
class Outer:
    out: str = field(default="runs/x", metadata=fp.not_shaping())
    every: int = 3
    between: str = field(default="follow", metadata=fp.moot_when("every", 1))
    inner: Inner = field(default_factory=Inner)
    items: tuple[Inner, ...] = (Inner(size=8),)


def test_metadata_decides_what_is_in_the_settings():
    assert fp.settings(Outer()) == {"every": 3, "between": "follow", "inner": {"size": 64},
                                    "items": [{"size": 8}]}
    # runtime settings only when asked; places never
    assert fp.settings(Outer(), keep_runtime=True)["inner"] == {"size": 64, "device": "cpu"}
    assert "out" not in fp.settings(Outer(), keep_runtime=True)
    # an added-later field is in only away from its older value; a moot one only when it matters
    changed = Outer(every=1, inner=Inner(new_knob=0.5))
    assert fp.settings(changed) == {"every": 1, "inner": {"size": 64, "new_knob": 0.5},
                                    "items": [{"size": 8}]}
    assert fp.settings(Outer(), ignore=("inner.size", "items")) == {"every": 3,
                                                                    "between": "follow",
                                                                    "inner": {}}
    assert fp.flat({"a": {"b": 1, "c": {}}, "d": [1]}) == {"a.b": 1, "d": [1]}
    assert fp.differing_keys(fp.settings(Outer()), fp.settings(changed)) == [
        "between", "every", "inner.new_knob"]
    assert fp.added_later_fields(Outer) == {"inner.new_knob": 0.0}
    # the two digest forms on record: compact full SHA-256 (repeats), json.dumps' default
    # separators cut to 16 (benchmark stages)
    s = fp.settings(Outer())
    assert fp.digest(s) != fp.digest(s, compact=False)[:64]
    assert len(fp.digest(s)) == 64 and len(fp.digest(s, length=16, compact=False)) == 16


#: ``fingerprint.json`` of a default build of one CSV source, as builds made before the
#: mechanism (and before ``mri_metric``) wrote it (printed by main at 0a6dead): such a folder
#: must still resume
OLDER_BUILD = {
    "augment.augment_fraction": 0.0, "augment.augmentations": [],
    "augment.distraction_fraction": 0.0, "detect_between": "follow", "detect_every": 3,
    "every": 10, "faces.iou_threshold": 0.3, "faces.margin": 1.3, "faces.max_side": 960,
    "faces.min_face_size": 40, "faces.second_pass_below": 0.0,
    "faces.second_pass_thresholds": [0.6, 0.7, 0.7], "faces.size": 256,
    "faces.thresholds": [0.85, 0.95, 0.95], "max_frames": None, "seed": 0,
    "sources": [{"fraction": 1.0, "detect_faces": True, "include_reals": True,
                 "kind": "csv", "name": "", "options": {}, "root": "pairs.csv"}],
    "split.test": 0.1, "split.val": 0.1}


def test_builds_made_before_the_mechanism_and_the_metric_still_resume(tmp_path):
    src = (BuildSourceConfig(kind="csv", root="pairs.csv"),)
    now = fingerprint(BuildConfig(sources=src, out=str(tmp_path), workers=4, progress=False))
    assert json.dumps(now, sort_keys=True) == json.dumps(OLDER_BUILD, sort_keys=True)
    (tmp_path / "fingerprint.json").write_text(json.dumps(OLDER_BUILD))
    check_fingerprint(tmp_path, now, restart=False)  # resumes: no error
    gms = fingerprint(BuildConfig(sources=src, mri_metric="gms"))
    assert fp.differing_keys(OLDER_BUILD, gms) == ["mri_metric"]
    blend = fingerprint(BuildConfig(sources=src, self_blend=BuildSelfBlendConfig(per_real=1)))
    assert fp.differing_keys(OLDER_BUILD, blend) == ["self_blend.per_real", "self_blend.splits"]


#: ``fingerprint.json`` of a default face-set build of one CSV source as main wrote it at
#: 98a6c2f, before the face-set config and the MRI-DF's shared one base (VideoBuildConfig)
OLDER_FACE_SET = {
    "dataset_splits": True, "every": 10, "faces.iou_threshold": 0.3, "faces.margin": 1.3,
    "faces.max_side": 960, "faces.min_face_size": 40, "faces.second_pass_below": 0.5,
    "faces.second_pass_thresholds": [0.6, 0.7, 0.7], "faces.size": 256,
    "faces.thresholds": [0.85, 0.95, 0.95], "max_faces": 32, "max_frames": None, "seed": 0,
    "sources": [{"detect_faces": True, "fraction": 1.0, "include_reals": True, "kind": "csv",
                 "name": "", "options": {}, "root": "pairs.csv"}],
    "split.test": 0.1, "split.val": 0.1}


def test_shared_sections_keep_the_builders_and_benchmarks_keys_and_fingerprints(tmp_path):
    """Frame sampling (every, max_frames) and the crop size (size, max_side) are declared once
    (FrameSampling, FaceCrop) and composed into both builders' configs and the benchmark's
    ``data``; their YAML keys, ranges and fingerprints are the ones they had."""
    src = (BuildSourceConfig(kind="csv", root="pairs.csv"),)
    now = fingerprint(BuildFaceSetConfig(sources=src, out=str(tmp_path), progress=False))
    assert json.dumps(now, sort_keys=True) == json.dumps(OLDER_FACE_SET, sort_keys=True)
    for cls in (BuildConfig, BuildFaceSetConfig, DataSettings):
        assert {"every", "max_frames"} <= {f.name for f in dataclasses.fields(cls)}
        with pytest.raises(ConfigError, match=rf"{cls.__name__}\.every: 0 is below the minimum 1"):
            cls(every=0)
        with pytest.raises(ConfigError, match=rf"{cls.__name__}\.max_frames: 0 is below"):
            cls(max_frames=0)
    # the crop section: the face detector's rules, in the benchmark's flat data section too
    with pytest.raises(ConfigError, match=r"DataSettings\.max_side: 16 is below the minimum 32"):
        DataSettings(max_side=16)
    data = DataSettings(every=5, max_frames=7, size=64, max_side=320)
    cfg = dataclasses.replace(BenchmarkConfig(), data=data, device="cpu")
    faces = bench_data.face_settings(cfg)
    assert (faces.size, faces.max_side, faces.device) == (64, 320, "cpu")
    assert {k: bench_data.face_set_settings(cfg)[k] for k in ("every", "max_frames", "size",
                                                               "max_side")} == {
        "every": 5, "max_frames": 7, "size": 64, "max_side": 320}


def test_benchmark_and_repeats_read_the_same_metadata():
    cfg = BenchmarkConfig()
    mdf = bench_data.mri_df_settings(cfg)
    assert set(mdf) == {"every", "max_frames", "size", "max_side", "augment_fraction", "val",
                        "seed"}  # detect_every (1), mri_metric (ssim) left out: older runs
    gms = dataclasses.replace(cfg, data=DataSettings(mri_metric="gms"))
    assert bench_data.mri_df_settings(gms)["mri_metric"] == "gms"
    gan = bench_models.gan_settings(gms)
    assert gan["data"]["mri_metric"] == "gms" and "root" not in gan["data"]
    assert "mri_metric" not in bench_models.gan_settings(cfg)["data"]
    # a detector's runtime keys: in the benchmark's stage records, not in a repeat's
    det = DetectorConfig()
    assert "log_every" in bench_models.detector_settings(cfg, "plain")["train"]
    assert "log_every" not in settings_of(det)["train"] and "name" not in settings_of(det)
    assert "resume" not in bench_models.detector_settings(cfg, "plain")["train"]
