"""Typed dataclass configs loaded from YAML, with ``--set a.b=c`` overrides.

Every component has a dataclass config. A YAML file holds one experiment; ``load_config``
turns it into the dataclass (nested dataclasses included), rejecting unknown keys with the
file name and the key, so a typo never silently falls back to a default.

* **Numbers as users write them**: ``1e-4``, ``1E5``, ``.5``, ``-3`` are numbers (YAML 1.1, which
  PyYAML implements, reads ``1e-4`` as a string; :class:`ConfigLoader` adds YAML 1.2's float form).
* **Ranges and choices**: a field may declare ``field(..., metadata=bounds(minimum=1))``
  (``minimum``, ``maximum``, ``exclusive_minimum``, ``exclusive_maximum``, ``choices``, a
  ``registry`` of names: ``bounds(registry=BACKBONES)``); fields
  that declare nothing get the rule of their name in :data:`NAMED_BOUNDS` (``batch_size >= 1``,
  ``max_steps >= 0``, ...). This metadata is the one source of a config's ranges: the loader
  checks every key it reads (a value outside is a :class:`ConfigError` naming the file and the
  key, before any work), and a class that also wants the check when it is built directly in
  Python derives from :class:`Checked` (or calls :func:`check_bounds` in its
  ``__post_init__``): the same error, naming the class and the field. A command line whose
  flags set fields directly checks each flag's value with :func:`check_field`, the error naming
  the flag. Only checks of one field against another stay hand-written in ``__post_init__``.
* **Bounded**: a config file over :data:`MAX_CONFIG_BYTES`, YAML nested too deeply, a key
  given twice in one mapping, and a fixed-length list (``tuple[float, float, float]``) of
  another length are refused naming the file and key - never cut, never a traceback.
* **Presets by inheritance**: a YAML file may say ``base: mri_gan.yaml`` (resolved relative to
  the file; chains allowed, cycles are an error) and give only what differs; nested sections
  merge key by key, lists are replaced whole.
* **Sections from other files, older key forms**: a config class may define a classmethod
  ``resolve_mapping(data, where) -> data``; :func:`from_dict` calls it on the mapping read for
  the class before its keys are checked, and a field it returns already built (a dataclass
  instance of the field's type) is taken as it is; and ``upgrade_mapping(data) -> data``,
  which :func:`load_config` applies to each file of a ``base:`` chain and to the overrides
  before they are merged (an older key form rewritten where it was written keeps the order in
  which the layers override one another). The benchmark's ``gan`` and ``detector`` sections
  use both: each is a typed config over a YAML file it names
  (:mod:`mrigan.app.benchmark.config`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from mrigan.errors import MriganError
from mrigan.fileio import atomic_write_text
from mrigan.registry import Registry

T = TypeVar("T")


class ConfigError(MriganError, ValueError):
    """A config file or override that does not fit its dataclass."""


#: Largest config file (or ``--set`` value) read: a config is a page of settings, not data
#: (a 20 MB file of 2.5 million thresholds took 83 s and 2.4 GB before it could be refused).
MAX_CONFIG_BYTES = 1_000_000


class ConfigLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads YAML 1.2 floats: ``1e-4``, ``1E5``, ``-2.5e+3``, and
    refuses a key given twice in one mapping (YAML's "last one wins" hides typos)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, Any] = {}
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark)
            except TypeError:  # an unhashable key: SafeLoader's own error says so
                break
            if first is not key_node.start_mark:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"found the key {key!r} twice (first on line {first.line + 1})",
                    key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def yaml_load(text: str) -> Any:
    """Parse YAML text with :class:`ConfigLoader` (safe: no Python objects). Text nested too
    deeply for the parser is a ``yaml.YAMLError`` (as any other malformed YAML), never a
    ``RecursionError``."""
    try:
        return yaml.load(text, Loader=ConfigLoader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:
        raise yaml.YAMLError("nested too deeply (a config is a few levels of sections)") from None


_RULE_KEYS = ("minimum", "maximum", "exclusive_minimum", "exclusive_maximum", "choices",
              "path_component", "registry", "registry_patterns")


def bounds(*, minimum: float | None = None, maximum: float | None = None,
           exclusive_minimum: float | None = None, exclusive_maximum: float | None = None,
           choices: Iterable[Any] | None = None, path_component: bool = False,
           registry: Registry | None = None, registry_patterns: Iterable[str] = (),
           ) -> dict[str, Any]:
    """Field metadata checked by the loader (and by :func:`check_bounds`):
    ``x: int = field(default=1, metadata=bounds(minimum=1))``. ``None`` values pass.
    ``path_component``: a string used as one folder name (a run's ``name`` under ``runs/``):
    not empty, not ``.`` or ``..``, without ``/``, ``\\`` or NUL.
    ``registry``: a component picked by name (:class:`mrigan.registry.Registry`): the value
    must be registered when the config is built, or start with one of ``registry_patterns``
    (``"timm:"``), so a misspelt backbone fails when its config is loaded, before any work."""
    out: dict[str, Any] = {}
    if registry is not None:
        out["registry"] = registry
        out["registry_patterns"] = tuple(registry_patterns)
    if path_component:
        out["path_component"] = True
    if minimum is not None:
        out["minimum"] = minimum
    if maximum is not None:
        out["maximum"] = maximum
    if exclusive_minimum is not None:
        out["exclusive_minimum"] = exclusive_minimum
    if exclusive_maximum is not None:
        out["exclusive_maximum"] = exclusive_maximum
    if choices is not None:
        out["choices"] = tuple(choices)
    return out


#: The rule of a run's ``name``: one folder under the output folder, never a path out of it.
RUN_NAME = bounds(path_component=True)

#: Rules for fields that declare no ``bounds`` metadata, by field name, in every config class.
#: Counts and sizes that cannot be negative, steps/intervals that must be positive, fractions.
NAMED_BOUNDS: dict[str, dict[str, Any]] = {
    "batch_size": bounds(minimum=1),  # intervals below: 0 turns the action off
    "epochs": bounds(minimum=0),
    "max_steps": bounds(minimum=0),
    "max_minutes": bounds(minimum=0),
    "num_workers": bounds(minimum=0),
    "workers": bounds(minimum=0),
    "eval_samples": bounds(minimum=0),
    "log_every": bounds(minimum=0),
    "eval_every": bounds(minimum=0),
    "checkpoint_every": bounds(minimum=0),
    "every": bounds(minimum=1),
    "image_size": bounds(minimum=1),
    "ngf": bounds(minimum=1, maximum=256),  # as mrigan.inference.ARCHITECTURE_LIMITS
    "ndf": bounds(minimum=1, maximum=256),
    "lr": bounds(exclusive_minimum=0),
    "dropout": bounds(minimum=0, maximum=1),
    "weight_decay": bounds(minimum=0),
    "seed": bounds(minimum=0),
    "bootstrap": bounds(minimum=0),
    "precision": bounds(choices=("auto", "fp32", "bf16", "fp16")),
    "channels_last": bounds(choices=("auto", True, False)),
}


def parse_overrides(items: Iterable[str] | None) -> dict[str, Any]:
    """``["train.lr=1e-4", "data.root=/x"]`` -> nested dict, values parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for item in items or ():
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key.sub=value")
        key, raw = item.split("=", 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError(f"override {key.strip()!r}: value of {len(raw):,} characters is "
                              f"over the cap of {MAX_CONFIG_BYTES:,}")
        try:
            value = yaml_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: value is not valid YAML "
                              f"({' '.join(str(exc).split())})") from exc
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


def read_yaml(path: str | os.PathLike, *, layer: Callable[[dict], dict] | None = None,
              _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A config file as a dict, with its ``base:`` chain resolved (base first, then the file).
    ``layer``: applied to each file of the chain before it is merged (``upgrade_mapping``)."""
    path = resolve_config_path(path)
    if not path.is_file():
        where = f" (base of {_chain[-1]})" if _chain else ""
        what = ("is a folder, not a config file" if path.is_dir() else
                "is not a regular file" if path.exists() else "config file not found")
        raise ConfigError(what + where, path)
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file of {size:,} bytes is over the cap of "
                          f"{MAX_CONFIG_BYTES:,} (a config is a page of settings)", path)
    try:
        data = yaml_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {' '.join(str(exc).split())}", path) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"top level must be a mapping, got {type(data).__name__}", path)
    has_base, base = "base" in data, data.pop("base", None)
    if layer is not None:
        data = layer(data)
    if not has_base:
        return data
    if not isinstance(base, str) or not base:
        raise ConfigError(f"'base' must be a file name, got {base!r}", path)
    me = path.resolve()
    base_path = (me.parent / base).resolve()
    chain = (*_chain, me)
    if base_path in chain:
        names = " -> ".join(p.name for p in (*chain, base_path))
        raise ConfigError(f"'base' chain has a cycle: {names}", path)
    return deep_merge(read_yaml(base_path, layer=layer, _chain=chain), data)


def from_dict(cls: type[T], data: Mapping[str, Any] | None, *, where: str = "config") -> T:
    """Build dataclass ``cls`` from a mapping, recursing into dataclass-typed fields."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping for {cls.__name__}, got {data!r}")
    resolve = getattr(cls, "resolve_mapping", None)
    if resolve is not None:  # sections read from other files, older key forms (module doc)
        data = resolve(data, where)
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
        if isinstance(value, Mapping) and not hasattr(hints[f.name], "resolve_mapping"):
            # a nested section keeps the parent's own default for the keys it leaves out
            # (a class with ``resolve_mapping`` resolves its own)
            default = _field_default(f)
            if dataclasses.is_dataclass(default):
                value = deep_merge(dataclasses.asdict(default), value)
        kwargs[f.name] = _coerce(hints[f.name], value, key_where(where, f.name))
        _check_bounds(f, kwargs[f.name], key_where(where, f.name))
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        if type(exc) is not ConfigError or exc.path is not None:
            raise
        # a class's own (cross-field) check names the field; the loader adds the file
        raise ConfigError(f"{where}: {exc.problem}") from exc
    except MriganError:
        raise
    except (ValueError, TypeError, KeyError) as exc:  # a class's own __post_init__ checks
        raise ConfigError(f"{where}: {' '.join(str(exc).split())}") from exc


_FILE_SUFFIXES = (".yaml", ".yml", ".json", ".pt", ".pth", ".ckpt", ".safetensors")


def key_where(where: str, name: str) -> str:
    """``configs/x.yaml`` + ``train`` -> ``configs/x.yaml: train``; ``Cfg.train`` + ``lr`` ->
    ``Cfg.train.lr``: the file, then the key path."""
    if ": " not in where and where.lower().endswith(_FILE_SUFFIXES):
        return f"{where}: {name}"
    return f"{where}.{name}"


def check_bounds(cfg: Any, where: str | None = None) -> None:
    """Every field of the dataclass instance ``cfg`` against its ``bounds`` metadata (else
    :data:`NAMED_BOUNDS`): the loader's check, for a config built directly in Python. A value
    outside is a :class:`ConfigError` naming ``where`` (default: the class) and the field."""
    where = where or type(cfg).__name__
    for f in dataclasses.fields(cfg):
        _check_bounds(f, getattr(cfg, f.name), key_where(where, f.name))


def check_field(cls: type, name: str, value: Any, where: str) -> None:
    """``value`` against the bounds of field ``name`` of the dataclass ``cls`` (as
    :func:`check_bounds`), before the config is built: what a command line does with a flag
    that sets that field, ``where`` naming the flag (``--workers: 0 is below the minimum 1``)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    _check_bounds(fields[name], value, where)


class Checked:
    """Base of a dataclass config whose ranges (``bounds`` metadata, :data:`NAMED_BOUNDS`) are
    checked however it is built: from YAML (the loader names the file and the key) or directly
    (:func:`check_bounds`). A subclass with cross-field checks overrides ``__post_init__`` and
    calls ``super().__post_init__()`` first."""

    def __post_init__(self) -> None:
        check_bounds(self)


def _check_bounds(f: dataclasses.Field, value: Any, where: str) -> None:
    """The field's ``bounds`` metadata, else :data:`NAMED_BOUNDS` by its name."""
    rule = ({k: f.metadata[k] for k in _RULE_KEYS if k in f.metadata}
            or NAMED_BOUNDS.get(f.name, {}))
    if not rule or value is None:
        return
    if rule.get("path_component") and isinstance(value, str) and (
            value.strip() in ("", ".", "..") or any(c in value for c in "/\\\0")):
        raise ConfigError(f"{where}: {value!r} must be a plain folder name (not empty, not "
                          "'..', without '/'): it names a folder under the output folder")
    if "choices" in rule and value not in rule["choices"]:
        raise ConfigError(f"{where}: {value!r} is not one of {list(rule['choices'])}")
    if "registry" in rule and isinstance(value, str):
        _check_registered(rule["registry"], rule.get("registry_patterns", ()), value, where)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if isinstance(value, float) and not math.isfinite(value):  # NaN and +-inf fit no range
        raise ConfigError(f"{where}: {value!r} is not a finite number")
    if "minimum" in rule and not value >= rule["minimum"]:
        raise ConfigError(f"{where}: {value!r} is below the minimum {rule['minimum']}")
    if "exclusive_minimum" in rule and not value > rule["exclusive_minimum"]:
        raise ConfigError(f"{where}: {value!r} must be greater than {rule['exclusive_minimum']}")
    if "maximum" in rule and not value <= rule["maximum"]:
        raise ConfigError(f"{where}: {value!r} is above the maximum {rule['maximum']}")
    if "exclusive_maximum" in rule and not value < rule["exclusive_maximum"]:
        raise ConfigError(f"{where}: {value!r} must be less than {rule['exclusive_maximum']}")


def _check_registered(registry: Registry, patterns: tuple[str, ...], value: str,
                      where: str) -> None:
    if value in registry or any(value.startswith(p) and len(value) > len(p) for p in patterns):
        return
    known = ", ".join([*registry.names(), *(f"{p}<name>" for p in patterns)]) or "(none)"
    raise ConfigError(f"{where}: unknown {registry.kind} {value!r}; known: {known}")


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):  # a section already built (``resolve_mapping``) passes
        return value if isinstance(value, tp) else from_dict(tp, value, where=where)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        if len(args) == 1:
            return _coerce(args[0], value, where)
        return value
    if origin in (tuple, list) and not isinstance(value, (list, tuple)):
        raise ConfigError(f"{where}: expected a list, got {value!r}")
    if origin in (tuple, list):
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):  # never cut or padded silently
                raise ConfigError(f"{where}: expected exactly {len(args)} values, got "
                                  f"{len(value)}")
            return tuple(_coerce(a, v, f"{where}[{i}]")
                         for i, (a, v) in enumerate(zip(args, value, strict=True)))
        inner = args[0] if args else Any
        seq = [_coerce(inner, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(seq) if origin is tuple else seq
    if tp in (int, float) and isinstance(value, bool):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    if tp is float and isinstance(value, (int, float)):
        if math.isnan(value):
            raise ConfigError(f"{where}: expected a number, got NaN")
        return float(value)
    if tp is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if tp in (int, float, str, bool) and not isinstance(value, tp):
        if tp is str and isinstance(value, (int, float)):
            return str(value)
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def require_path(value: str | os.PathLike | None, key: str, *, kind: str = "file",
                 where: str = "config", hint: str = "") -> Path:
    """Up-front check of a path-valued config key: set, existing, and a file (``kind="file"``)
    or a folder (``kind="dir"``); a :class:`ConfigError` naming the key and the path otherwise."""
    if value is None or not str(value).strip():
        raise ConfigError(f"{where}: {key} is not set" + (f" ({hint})" if hint else ""))
    path = Path(value)
    ok = path.is_file() if kind == "file" else path.is_dir()
    if not ok:
        noun = "file" if kind == "file" else "folder"
        what = f"no such {noun}" if not path.exists() else f"not a {noun}"
        raise ConfigError(f"{what} (from {key} in {where})" + (f"; {hint}" if hint else ""), path)
    return path


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def values_of(section: type, cfg: Any) -> dict[str, Any]:
    """The values in ``cfg`` of the fields of the dataclass ``section`` (a shared base of
    ``cfg``'s class, :class:`datasets_builders.build_config.FrameSampling`): keyword arguments
    for another config made of the same section."""
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(section)}


def replace_keys(cfg: T, changes: Mapping[str, Any], where: str | None = None) -> T:
    """A copy of the dataclass config ``cfg`` with the nested keys of ``changes`` (``{"train":
    {"device": "cpu"}}``) changed, checked as the loader checks a file."""
    return from_dict(type(cfg), deep_merge(to_dict(cfg), changes),
                     where=where or type(cfg).__name__)


def load_config(
    cls: type[T],
    path: str | os.PathLike | None = None,
    overrides: Iterable[str] | Mapping[str, Any] | None = None,
) -> T:
    """Defaults of ``cls`` <- YAML file ``path`` <- overrides (``["a.b=1"]`` or a nested dict).
    A class's ``upgrade_mapping`` (module doc) rewrites each file of the chain and the overrides
    before they are merged."""
    layer = getattr(cls, "upgrade_mapping", None)
    data: dict[str, Any] = read_yaml(path, layer=layer) if path else {}
    if overrides:
        extra = overrides if isinstance(overrides, Mapping) else parse_overrides(overrides)
        data = deep_merge(data, layer(dict(extra)) if layer is not None else extra)
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
