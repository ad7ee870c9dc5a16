"""Registry, configs and atomic writes: the small pieces every package uses."""

from __future__ import annotations

import dataclasses
import os

import pytest

from mrigan.config import ConfigError, load_config, parse_overrides, save_config
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
