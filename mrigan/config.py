"""Typed dataclass configs loaded from YAML, with ``--set a.b=c`` overrides.

Every component has a dataclass config. A YAML file holds one experiment; ``load_config``
turns it into the dataclass (nested dataclasses included), rejecting unknown keys with the
file name and the key, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from mrigan.errors import MriganError
from mrigan.fileio import atomic_write_text

T = TypeVar("T")


class ConfigError(MriganError, ValueError):
    """A config file or override that does not fit its dataclass."""


def parse_overrides(items: Iterable[str] | None) -> dict[str, Any]:
    """``["train.lr=1e-4", "data.root=/x"]`` -> nested dict, values parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for item in items or ():
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key.sub=value")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw.strip() else ""
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} conflicts with another override")
        node[parts[-1]] = value
    return out


def deep_merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


#: The folder holding ``mrigan/``, ``configs/`` and ``tests/`` in a source checkout.
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def resolve_config_path(path: str | os.PathLike) -> Path:
    """A config path as given, else (for a relative path such as ``configs/mri_gan.yaml``) the
    same path inside the project checkout, so commands work from any working directory."""
    path = Path(path)
    if path.is_file() or path.is_absolute():
        return path
    candidate = PROJECT_ROOT / path
    return candidate if candidate.is_file() else path


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    path = resolve_config_path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def from_dict(cls: type[T], data: Mapping[str, Any] | None, *, where: str = "config") -> T:
    """Build dataclass ``cls`` from a mapping, recursing into dataclass-typed fields."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping for {cls.__name__}, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {unknown} for {cls.__name__}; known: {sorted(names)}"
        )
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        default = _field_default(f)
        if dataclasses.is_dataclass(default) and isinstance(value, Mapping):
            # a nested section keeps the parent's own default for the keys it leaves out
            value = deep_merge(dataclasses.asdict(default), value)
        kwargs[f.name] = _coerce(hints[f.name], value, f"{where}.{f.name}")
    return cls(**kwargs)


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where=where)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        if len(args) == 1:
            return _coerce(args[0], value, where)
        return value
    if origin in (tuple, list) and isinstance(value, (list, tuple)):
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            return tuple(_coerce(a, v, where) for a, v in zip(args, value, strict=False))
        inner = args[0] if args else Any
        seq = [_coerce(inner, v, where) for v in value]
        return tuple(seq) if origin is tuple else seq
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if tp in (int, float, str, bool) and not isinstance(value, tp):
        if tp is str and isinstance(value, (int, float)):
            return str(value)
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def load_config(
    cls: type[T],
    path: str | os.PathLike | None = None,
    overrides: Iterable[str] | Mapping[str, Any] | None = None,
) -> T:
    """Defaults of ``cls`` <- YAML file ``path`` <- overrides (``["a.b=1"]`` or a nested dict)."""
    data: dict[str, Any] = read_yaml(path) if path else {}
    if overrides:
        extra = overrides if isinstance(overrides, Mapping) else parse_overrides(overrides)
        data = deep_merge(data, extra)
    return from_dict(cls, data, where=str(path) if path else cls.__name__)


def save_config(cfg: Any, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML next to an output (atomically)."""
    atomic_write_text(path, yaml.safe_dump(_plain(to_dict(cfg)), sort_keys=False))


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def add_config_arguments(parser, default_config: str | None = None) -> None:
    """The flags every subcommand shares: ``--config FILE`` and repeatable ``--set key=value``."""
    parser.add_argument("--config", default=default_config,
                        help="YAML experiment config" + (f" (default: {default_config})" if default_config else ""))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set data.root=/path (repeatable)")


def config_from_args(cls: type[T], args) -> T:
    """Build ``cls`` from ``args.config`` and ``args.overrides`` (see ``add_config_arguments``)."""
    return load_config(cls, getattr(args, "config", None), getattr(args, "overrides", None))
