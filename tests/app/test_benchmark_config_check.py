"""The benchmark's whole config tree is checked when it is loaded: a misspelt component name or
key inside a nested stage config fails in seconds, before any stage folder exists (issue #22)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from detectors.backbones import BACKBONES
from detectors.config import DetectorConfig
from mrigan.app.cli import main
from mrigan.config import ConfigError, load_config
from mrigan.models import GENERATORS
from mrigan.train import GanConfig


@pytest.mark.parametrize("setting, named", [
    ("detector.set.model.backbone=nope", "'nope'"),
    ("detector.set.model.head=nope", "'nope'"),
    ("gan.set.model.generator=nope", "'nope'"),
    ("gan.set.train.nope=1", "nope"),
    ("detector.set.train.lr=-1", "-1"),
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
