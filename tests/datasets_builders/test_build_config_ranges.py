"""The builders' config ranges are ``bounds`` metadata (mrigan.config.Checked): a value outside
is refused the same way whether the config comes from YAML or is built in Python, naming the
field (and the file when loaded from YAML)."""

from __future__ import annotations

import re

import pytest

from datasets_builders.build_config import (
    BuildAugmentConfig,
    BuildConfig,
    BuildSourceConfig,
    BuildSplitConfig,
)
from datasets_builders.build_faces import BuildFaceSetConfig
from datasets_builders.faces import FaceDetectionConfig
from mrigan.config import ConfigError, load_config

# (class, key, bad value, the message's tail); every row was a hand-written check before
CASES = [
    (BuildConfig, "every", 0, "every: 0 is below the minimum 1"),
    (BuildConfig, "max_frames", 0, "max_frames: 0 is below the minimum 1"),
    (BuildConfig, "detect_every", 0, "detect_every: 0 is below the minimum 1"),
    (BuildConfig, "workers", 0, "workers: 0 is below the minimum 1"),
    (BuildConfig, "detect_between", "guess", "detect_between: 'guess' is not one of"),
    (BuildFaceSetConfig, "every", 0, "every: 0 is below the minimum 1"),
    (BuildFaceSetConfig, "max_frames", -1, "max_frames: -1 is below the minimum 1"),
    (BuildFaceSetConfig, "max_faces", 0, "max_faces: 0 is below the minimum 1"),
    (BuildAugmentConfig, "augment_fraction", 1.5, "augment_fraction: 1.5 is above the maximum 1"),
    (BuildAugmentConfig, "distraction_fraction", -0.5, "distraction_fraction: -0.5 is below"),
    (BuildSplitConfig, "val", -0.1, "val: -0.1 is below the minimum 0"),
    (FaceDetectionConfig, "min_face_size", 0, "min_face_size: 0 is below the minimum 1"),
    (FaceDetectionConfig, "max_side", 16, "max_side: 16 is below the minimum 32"),
    (FaceDetectionConfig, "batch_size", 0, "batch_size: 0 is below the minimum 1"),
    (FaceDetectionConfig, "margin", 0.0, "margin: 0.0 must be greater than 0"),
    (FaceDetectionConfig, "size", 8, "size: 8 is below the minimum 16"),
    (FaceDetectionConfig, "iou_threshold", 1.5, "iou_threshold: 1.5 is above the maximum 1"),
    (FaceDetectionConfig, "second_pass_below", -1.0, "second_pass_below: -1.0 is below"),
    (FaceDetectionConfig, "multi_face_fraction", 1.0, "multi_face_fraction: 1.0 must be less than 1"),
]
#: where each class sits in a build YAML file
SECTION = {BuildConfig: "", BuildFaceSetConfig: "", BuildAugmentConfig: "augment.",
           BuildSplitConfig: "split.", FaceDetectionConfig: "faces."}


@pytest.mark.parametrize("cls, key, value, tail", CASES,
                         ids=[f"{c.__name__}.{k}" for c, k, _, _ in CASES])
def test_ranges_refused_built_directly_and_from_yaml(tmp_path, cls, key, value, tail):
    with pytest.raises(ConfigError, match=re.escape(f"{cls.__name__}.{tail}")):
        cls(**{key: value})
    section = SECTION[cls]
    top = BuildFaceSetConfig if cls is BuildFaceSetConfig else BuildConfig
    path = tmp_path / "build.yaml"
    line = f"{key}: {value!r}\n"
    path.write_text(f"{section[:-1]}:\n  {line}" if section else line)
    with pytest.raises(ConfigError, match=re.escape(f"build.yaml: {section}{tail}")):
        load_config(top, path)
    assert cls() == load_config(cls, None)  # the defaults are inside every range


def test_a_sources_fraction_names_the_source_and_the_list_item(tmp_path):
    with pytest.raises(ConfigError, match=re.escape("sources[ffpp].fraction: 2 is above the maximum 1")):
        BuildSourceConfig(kind="ffpp", root="x", fraction=2)
    path = tmp_path / "two.yaml"
    path.write_text("sources:\n  - {kind: csv, root: a.csv}\n  - {kind: csv, root: b.csv, fraction: -1}\n")
    with pytest.raises(ConfigError, match=re.escape("two.yaml: sources[1].fraction: -1.0 is below the minimum 0")):
        load_config(BuildConfig, path)
    # a check that is not a range stays in __post_init__; the loader adds the file and the item
    path.write_text("sources:\n  - {kind: csv, root: ''}\n")
    with pytest.raises(ConfigError, match=re.escape("two.yaml: sources[0]: sources[csv].root is empty")):
        load_config(BuildConfig, path)
    with pytest.raises(ConfigError, match="must sum to less than 1"):
        BuildSplitConfig(val=0.6, test=0.4)
