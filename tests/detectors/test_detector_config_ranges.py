"""Detector and GAN config ranges are ``bounds`` metadata (mrigan.config.Checked): refused the
same way from YAML (file and key named) and when built in Python (class and field named)."""

from __future__ import annotations

import re

import pytest

from detectors.config import (
    AggregationConfig,
    AugmentParams,
    DetectorConfig,
    DetectorDataConfig,
    DetectorTrainConfig,
)
from mrigan.config import ConfigError, load_config
from mrigan.gan_config import GanConfig, GanDataConfig, GanTrainConfig

# (class, key, bad value, the message's tail, YAML preset and section of that class)
CASES = [
    (DetectorTrainConfig, "optimizer", "sgd", "optimizer: 'sgd' is not one of",
     DetectorConfig, "configs/detector_plain.yaml", "train"),
    (DetectorTrainConfig, "scheduler", "step", "scheduler: 'step' is not one of",
     DetectorConfig, "configs/detector_plain.yaml", "train"),
    (DetectorTrainConfig, "bn_recalibrate", -1, "bn_recalibrate: -1 is below the minimum 0",
     DetectorConfig, "configs/detector_plain.yaml", "train"),
    (DetectorTrainConfig, "batch_size", 0, "batch_size: 0 is below the minimum 1",
     DetectorConfig, "configs/detector_plain.yaml", "train"),
    (DetectorDataConfig, "workers", -1, "workers: -1 is below the minimum 0",
     DetectorConfig, "configs/detector_plain.yaml", "data"),
    (AugmentParams, "jpeg_p", 1.5, "jpeg_p: 1.5 is above the maximum 1.0",
     DetectorConfig, "configs/detector_plain.yaml", "train.augment_params"),
    (GanTrainConfig, "compile_mode", "fast", "compile_mode: 'fast' is not one of",
     GanConfig, "configs/mri_gan.yaml", "train"),
    (GanDataConfig, "eval_samples", -1, "eval_samples: -1 is below the minimum 0",
     GanConfig, "configs/mri_gan.yaml", "data"),
]


@pytest.mark.parametrize("cls, key, value, tail, top, preset, section", CASES,
                         ids=[f"{c[0].__name__}.{c[1]}" for c in CASES])
def test_ranges_refused_from_yaml_and_in_python(cls, key, value, tail, top, preset, section):
    with pytest.raises(ConfigError, match=re.escape(f"{cls.__name__}.{tail}")):
        cls(**{key: value})
    with pytest.raises(ConfigError, match=re.escape(preset)) as err:
        load_config(top, preset, [f"{section}.{key}={value}"])
    assert f"{section}.{tail}" in str(err.value)


def test_aggregation_quantiles_are_a_count():
    with pytest.raises(ConfigError, match=re.escape("AggregationConfig.quantile_thresholds: -1")):
        AggregationConfig(quantile_thresholds=-1)
    assert AggregationConfig(quantile_thresholds=0).quantile_thresholds == 0
