"""Registry, configs and atomic writes: the small pieces every package uses."""

from __future__ import annotations

import dataclasses
import math
import os
import re

import pytest
import torch

from mrigan import device
from mrigan.config import (
    PROJECT_ROOT,
    Checked,
    ConfigError,
    bounds,
    check_bounds,
    load_config,
    parse_overrides,
    save_config,
)
from mrigan.device import DeviceError, resolve_device
from mrigan.fileio import atomic_open, atomic_write_json
from mrigan.registry import Registry


@dataclasses.dataclass(frozen=True)
class Inner:
    lr: float = 1e-3
    steps: int = 10


@dataclasses.dataclass(frozen=True)
class Outer:
    name: str = "x"
    inner: Inner = dataclasses.field(default_factory=Inner)
    sizes: tuple[int, ...] = (1, 2)


def test_registry_lookup_and_errors():
    reg = Registry("backbone")
    reg.register("a", lambda: 1)

    @reg.register("b")
    def b():
        return 2

    assert reg.build("a") == 1 and reg.get("b") is b and reg.names() == ["a", "b"]
    with pytest.raises(KeyError, match="unknown backbone 'c'; known: a, b"):
        reg.get("c")
    with pytest.raises(KeyError, match="already registered"):
        reg.register("a", lambda: 3)


def test_config_yaml_overrides_and_roundtrip(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("name: run1\ninner:\n  lr: 2.0e-4\nsizes: [3, 4]\n")
    cfg = load_config(Outer, path, ["inner.steps=7", "name=run2"])
    assert cfg == Outer(name="run2", inner=Inner(lr=2e-4, steps=7), sizes=(3, 4))
    save_config(cfg, tmp_path / "out" / "config.yaml")
    assert load_config(Outer, tmp_path / "out" / "config.yaml") == cfg
    assert parse_overrides(["a.b=1", "a.c=x"]) == {"a": {"b": 1, "c": "x"}}


def test_config_rejects_unknown_keys_and_bad_types_naming_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("inner:\n  lrr: 1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*unknown key\(s\) \['lrr'\]"):
        load_config(Outer, path)
    with pytest.raises(ConfigError, match="expected int"):
        load_config(Outer, None, ["inner.steps=abc"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(Outer, tmp_path / "missing.yaml")


def test_atomic_write_leaves_old_file_on_error(tmp_path):
    dest = tmp_path / "a.json"
    atomic_write_json(dest, {"v": 1})
    with pytest.raises(RuntimeError), atomic_open(dest, "w") as fh:
        fh.write("partial")
        raise RuntimeError("killed")
    assert dest.read_text().strip().replace(" ", "").replace("\n", "") == '{"v":1}'
    assert os.listdir(tmp_path) == ["a.json"]


@dataclasses.dataclass(frozen=True)
class Parent:
    inner: Inner = dataclasses.field(default_factory=lambda: Inner(lr=5.0, steps=3))


def test_nested_section_keeps_the_parents_defaults_for_keys_left_out():
    cfg = load_config(Parent, None, ["inner.steps=9"])
    assert cfg.inner == Inner(lr=5.0, steps=9)  # not Inner's own lr=1e-3


def test_project_configs_resolve_from_any_working_directory(tmp_path, monkeypatch):
    from mrigan.config import read_yaml

    monkeypatch.chdir(tmp_path)
    data = read_yaml("configs/mri_gan.yaml")
    assert data and "model" in data


def test_atomic_writes_get_ordinary_permissions(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    atomic_write_json(tmp_path / "r.json", {})
    mode = (tmp_path / "r.json").stat().st_mode & 0o777
    assert mode == 0o666 & ~umask and mode & 0o044  # not mkstemp's owner-only 0600


def test_disjoint_sets_group_transitively_whatever_the_order():
    import itertools

    from mrigan.grouping import DisjointSets

    links = [("a", "b"), ("c", "d"), ("b", "d"), ("e", "e")]
    for order in itertools.permutations(links):
        sets = DisjointSets()
        for x, y in order:
            sets.union(x, y)
        assert {sets.find(k) for k in "abcd"} == {"a"}  # one group, smallest key as its root
        assert sets.find("e") == "e" and sets.find("z") == "z"


# --- config parsing: numbers, ranges, base inheritance, encodings (issue 15 family 6) ---------


@pytest.mark.parametrize("raw, value", [("1e-4", 1e-4), ("1E5", 1e5), (".5", 0.5), ("-3", -3.0),
                                        ("2.0e-4", 2e-4), ("+2e3", 2000.0)])
def test_numbers_parse_as_users_write_them(raw, value, tmp_path):
    @dataclasses.dataclass(frozen=True)
    class Number:
        x: float = 0.0

    cfg = load_config(Number, None, [f"x={raw}"])
    assert cfg.x == value and isinstance(cfg.x, float)
    (tmp_path / "n.yaml").write_text(f"x: {raw}\n")
    assert load_config(Number, tmp_path / "n.yaml").x == value


def test_project_config_numbers_and_overrides_parse_like_the_docs_say():
    from mrigan.train import GanConfig

    cfg = load_config(GanConfig, "configs/mri_gan_cpu.yaml", ["optim.lr=1e-4", "train.batch_size=8"])
    assert cfg.optim.lr == 1e-4 and cfg.train.batch_size == 8


@pytest.mark.parametrize("override, key", [
    ("train.batch_size=-4", "train.batch_size"), ("train.max_steps=-5", "train.max_steps"),
    ("optim.lr=0", "optim.lr"), ("model.ngf=100000", "model.ngf"),
    ("train.precision=fp8", "train.precision"), ("model.dropout=1.5", "model.dropout"),
    ("train.batch_size=true", "train.batch_size"), ("optim.lr=.nan", "optim.lr"),
])
def test_out_of_range_values_name_the_key(override, key):
    from mrigan.train import GanConfig

    with pytest.raises(ConfigError, match=re.escape(key)):
        load_config(GanConfig, "configs/mri_gan_cpu.yaml", [override])


def test_field_metadata_bounds_win_over_the_named_rules():
    @dataclasses.dataclass(frozen=True)
    class Custom:
        batch_size: int = dataclasses.field(default=0, metadata=bounds(minimum=0))
        mode: str = dataclasses.field(default="a", metadata=bounds(choices=("a", "b")))

    assert load_config(Custom, None, ["batch_size=0"]).batch_size == 0
    with pytest.raises(ConfigError, match=r"Custom\.mode: 'c' is not one of \['a', 'b'\]"):
        load_config(Custom, None, ["mode=c"])


@dataclasses.dataclass(frozen=True)
class Ranged(Checked):
    share: float = dataclasses.field(default=0.5, metadata=bounds(exclusive_minimum=0,
                                                                  exclusive_maximum=1))
    batch_size: int = 4  # NAMED_BOUNDS: >= 1
    limit: int | None = dataclasses.field(default=None, metadata=bounds(minimum=1))


@dataclasses.dataclass(frozen=True)
class HoldsRanged:
    ranged: Ranged = dataclasses.field(default_factory=Ranged)


@pytest.mark.parametrize("key, value, message", [
    ("share", 1.0, "share: 1.0 must be less than 1"),
    ("share", 0.0, "share: 0.0 must be greater than 0"),
    ("batch_size", 0, "batch_size: 0 is below the minimum 1"),
    ("limit", 0, "limit: 0 is below the minimum 1"),
])
def test_bounds_are_checked_from_yaml_and_when_built_directly(tmp_path, key, value, message):
    """One source of ranges (the ``bounds`` metadata): the same ConfigError and wording for a
    YAML file (naming the file and the key path) and for a config built in Python (naming
    the class and the field)."""
    path = tmp_path / "ranged.yaml"
    path.write_text(f"ranged:\n  {key}: {value}\n")
    with pytest.raises(ConfigError, match=re.escape(f"ranged.yaml: ranged.{message}")):
        load_config(HoldsRanged, path)
    with pytest.raises(ConfigError, match=re.escape(f"Ranged.{message}")):
        Ranged(**{key: value})
    with pytest.raises(ConfigError, match=re.escape(f"cfg.{message}")):
        check_bounds(_unchecked(key, value), "cfg")
    assert Ranged(limit=None, share=0.25, batch_size=1).share == 0.25


def test_a_bounded_number_must_be_finite(tmp_path):
    """A range says which numbers are allowed: NaN and +-inf are none of them, also where the
    range has one side only (the analysis' face margin >= 1 refused inf before it had bounds).
    From YAML the loader refuses NaN itself ("expected a number")."""
    from mrigan.app.analysis import AnalyzeConfig, AnalyzeFacesConfig

    for text in (".inf", "-.inf"):
        path = tmp_path / "analyze.yaml"
        path.write_text(f"faces:\n  margin: {text}\n")
        with pytest.raises(ConfigError,
                           match=r"analyze\.yaml: faces\.margin: -?inf is not a finite number"):
            load_config(AnalyzeConfig, path)
    for value in (math.inf, -math.inf, math.nan):
        with pytest.raises(ConfigError,
                           match=r"AnalyzeFacesConfig\.margin: -?(inf|nan) is not a finite number"):
            AnalyzeFacesConfig(margin=value)


def _unchecked(key, value):
    """A ``Ranged``-shaped plain dataclass (no __post_init__), holding ``value``."""
    plain = dataclasses.make_dataclass(
        "Plain", [(f.name, f.type, dataclasses.field(default=f.default, metadata=f.metadata))
                  for f in dataclasses.fields(Ranged)])
    return plain(**{key: value})


@dataclasses.dataclass(frozen=True)
class Span(Checked):
    low: int = 0
    high: int = dataclasses.field(default=1, metadata=bounds(minimum=0))

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.low > self.high:  # a cross-field check stays hand-written
            raise ConfigError(f"low={self.low} must not exceed high={self.high}")


@dataclasses.dataclass(frozen=True)
class Spans:
    spans: tuple[Span, ...] = ()


def test_list_items_and_cross_field_checks_name_the_file_and_the_item(tmp_path):
    path = tmp_path / "spans.yaml"
    path.write_text("spans:\n  - {low: 0, high: 2}\n  - {low: 0, high: -1}\n")
    with pytest.raises(ConfigError, match=r"spans\.yaml: spans\[1\]\.high: -1 is below the minimum 0"):
        load_config(Spans, path)
    path.write_text("spans:\n  - {low: 3, high: 2}\n")
    with pytest.raises(ConfigError, match=r"spans\.yaml: spans\[0\]: low=3 must not exceed high=2"):
        load_config(Spans, path)
    with pytest.raises(ConfigError, match=r"^low=3 must not exceed high=2$"):
        Span(3, 2)
    assert load_config(Spans, None, {"spans": [{"low": 1, "high": 1}]}).spans == (Span(1, 1),)


def test_base_inheritance_chains_and_relative_paths(tmp_path):
    (tmp_path / "presets").mkdir()
    (tmp_path / "presets" / "root.yaml").write_text("name: root\ninner:\n  lr: 1e-3\n  steps: 4\n")
    (tmp_path / "presets" / "mid.yaml").write_text("base: root.yaml\ninner:\n  steps: 5\n")
    (tmp_path / "leaf.yaml").write_text("base: presets/mid.yaml\nname: leaf\nsizes: [9]\n")
    assert load_config(Outer, tmp_path / "leaf.yaml") == Outer(name="leaf", inner=Inner(1e-3, 5),
                                                               sizes=(9,))


def test_base_cycles_missing_bases_and_unknown_keys_are_errors(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match=r"cycle: a\.yaml -> b\.yaml -> a\.yaml"):
        load_config(Outer, tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("base: nowhere.yaml\n")
    with pytest.raises(ConfigError, match=r"nowhere\.yaml: config file not found \(base of"):
        load_config(Outer, tmp_path / "c.yaml")
    (tmp_path / "d.yaml").write_text("base: e.yaml\ninner: {steps: 2}\n")
    (tmp_path / "e.yaml").write_text("inner: {typo: 1}\n")
    with pytest.raises(ConfigError, match=r"d\.yaml.*unknown key\(s\) \['typo'\]"):
        load_config(Outer, tmp_path / "d.yaml")


def test_non_utf8_yaml_names_the_file(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1\.yaml: not UTF-8"):
        load_config(Outer, path)


def _config_classes():
    from datasets_builders.build_faces import BuildFaceSetConfig
    from datasets_builders.mri_df import BuildConfig
    from detectors.config import DetectorConfig, EvaluateConfig
    from detectors.realism.config import RealismConfig
    from mrigan.app.benchmark.config import BenchmarkConfig
    from mrigan.app.demo.config import DemoConfig
    from mrigan.train import GanConfig

    return {"mri_gan": GanConfig, "detector_evaluate": EvaluateConfig, "detector": DetectorConfig,
            "realism": RealismConfig, "build": BuildConfig, "demo": DemoConfig,
            "face_set": BuildFaceSetConfig, "benchmark": BenchmarkConfig}


def test_every_project_config_loads_and_cpu_presets_inherit_their_base():
    classes = _config_classes()
    paths = sorted((PROJECT_ROOT / "configs").glob("*.yaml"))
    assert len(paths) >= 12
    for path in paths:
        cls = next(c for prefix, c in classes.items() if path.stem.startswith(prefix))
        cfg = load_config(cls, path)
        assert cfg.name if hasattr(cfg, "name") else cfg
    # the *_cpu presets give only what differs: what they leave out is the base's value
    gan = load_config(classes["mri_gan"], "configs/mri_gan_cpu.yaml")
    assert (gan.name, gan.model.image_size, gan.loss.tau, gan.optim.beta1) == ("mri_gan_cpu", 64, 0.3, 0.5)
    det = load_config(classes["detector"], "configs/detector_mri_cpu.yaml")
    assert (det.input.name, det.input.mri_cache, det.model.backbone) == ("mri", None, "tiny-cnn")
    for stem in ("mri_gan_cpu", "detector_plain_cpu", "detector_mri_cpu", "realism_cpu"):
        text = (PROJECT_ROOT / "configs" / f"{stem}.yaml").read_text()
        assert f"base: {stem.removesuffix('_cpu')}.yaml" in text


# --- devices and CPU bf16 (issue 15 family 5, issue 14 goal 5) --------------------------------


@pytest.mark.parametrize("spec, message", [
    ("cpu;id", "is not a device name"), ("gpu", "is not a device name"),
    ("cuda", "CUDA is not available"), ("cuda:7", "CUDA"), ("meta", "not supported"),
])
def test_bad_or_absent_devices_are_user_errors(spec, message, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match=re.escape(repr(spec)) + ".*" + message):
        resolve_device(spec)
    assert resolve_device("CPU") == torch.device("cpu")


def test_cpuinfo_flags_decide_native_bf16(tmp_path, monkeypatch):
    intel = tmp_path / "intel"
    intel.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f amx_bf16 amx_tile\n")
    amd = tmp_path / "amd"
    amd.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f\n")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n")
    real = device._cpuinfo_flags
    monkeypatch.delenv(device.NATIVE_BF16_ENV, raising=False)  # the detection itself
    for path, native in ((intel, True), (amd, False), (arm, True), (tmp_path / "none", False)):
        monkeypatch.setattr(device, "_cpuinfo_flags", lambda p=path: real(str(p)))
        device._detected_native_bf16.cache_clear()
        assert device.cpu_has_native_bf16() is native
        # the override wins either way (the suite pins it; users compare with it)
        for forced, expected in (("1", True), ("0", False), ("yes", True), ("off", False)):
            monkeypatch.setenv(device.NATIVE_BF16_ENV, forced)
            assert device.cpu_has_native_bf16() is expected
            assert "forced by MRIGAN_NATIVE_BF16" in device.cpu_description()
        monkeypatch.delenv(device.NATIVE_BF16_ENV)
    device._detected_native_bf16.cache_clear()
    monkeypatch.setenv(device.NATIVE_BF16_ENV, "maybe")
    with pytest.raises(ConfigError, match="MRIGAN_NATIVE_BF16='maybe': use 1 or 0"):
        device.cpu_has_native_bf16()


def test_auto_precision_on_cpu_is_fp32_for_inference_and_native_bf16_for_training(
        bf16_capability, recwarn):
    """Issue 20: inference ``auto`` is fp32 on every CPU (the same maps whatever the CPU);
    training ``auto`` takes bf16 where the CPU has it natively."""
    native = bf16_capability
    device._warn_slow_bf16_once.cache_clear()
    cpu = torch.device("cpu")
    assert device.resolve_precision(cpu, "auto") == "fp32"
    assert device.resolve_precision(cpu, "auto", job="inference") == "fp32"
    assert device.resolve_precision(cpu, "auto", job="training") == ("bf16" if native else "fp32")
    assert device.resolve_precision(cpu, "fp32", job="training") == "fp32"
    for job, expected in (("inference", torch.float32),
                          ("training", torch.bfloat16 if native else torch.float32)):
        with device.autocast(cpu, "auto", job=job):
            assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == expected, job
    # an explicit bf16 is honoured for either job; without native bf16 it warns, once per process
    for job in ("inference", "training", "inference"):
        assert device.resolve_precision(cpu, "bf16", job=job) == "bf16"
    slow = [w for w in recwarn if "without native bf16" in str(w.message)]
    assert len(slow) == (0 if native else 1)
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        device.resolve_precision(cpu, "fp8")
    with pytest.raises(ValueError, match="unknown job 'serving'"):
        device.resolve_precision(cpu, "auto", job="serving")
