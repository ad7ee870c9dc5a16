"""Settings fingerprints: which config fields shape an output, read from the fields' metadata.

Every resumable job (the MRI-DF and face-set builders, the benchmark's stages, repeated runs)
records the settings that shape its output and, on a rerun, skips work done with the same
settings or refuses other ones, naming the keys that differ. What shapes the output is said
once, where each field is declared, as dataclass field metadata (combine it with ``bounds``:
``field(default=1, metadata={**bounds(minimum=1), **runtime()})``):

* :func:`not_shaping` - where or which part an output goes (``out``, ``name``, ``shard``,
  ``resume``): never in a fingerprint.
* :func:`runtime` - how a job executes (workers, threads, progress, log cadence, the device of
  face detection): left out by :func:`settings` unless ``keep_runtime`` (the benchmark's stage
  records were made with them in and keep them so those run folders still resume).
* :func:`added_later` - a setting added after outputs were already being made, with the value
  that reproduces them: left out while it holds that value, so a folder made before the field
  existed still resumes; any other value is in the fingerprint (and refused as a change).
* :func:`moot_when` - a setting that changes nothing while a sibling field holds a value (what
  frames between detections get matters only when there are frames between detections).
* :func:`recorded_as` - a value whose spelling changed (the GAN's "no step limit" was
  ``max_steps: 0`` before the shared loop section made it ``None``): recorded in its older
  spelling, so fingerprints made before the change still match.

A caller may also ``ignore`` dotted keys that its context covers otherwise (a benchmark stage's
data root is the fingerprint of the stage that wrote it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from collections.abc import Iterable, Mapping
from typing import Any

_ROLE = "fingerprint"
_ADDED = "added_later"
_MOOT = "moot_when"
_RECORDED = "recorded_as"
#: metadata keys that say how a field's values were spelled or added in the past (its
#: history), not what the field means
HISTORY_KEYS = (_ADDED, _RECORDED)


def not_shaping() -> dict[str, Any]:
    """Field metadata: where or which part the output goes; never in a fingerprint."""
    return {_ROLE: "place"}


def runtime() -> dict[str, Any]:
    """Field metadata: how the job runs (workers, threads, progress); left out unless asked."""
    return {_ROLE: "runtime"}


def added_later(old: Any) -> dict[str, Any]:
    """Field metadata: left out of the fingerprint while the field holds ``old``, the value
    that reproduces outputs made before the field existed."""
    return {_ADDED: old}


def moot_when(sibling: str, value: Any) -> dict[str, Any]:
    """Field metadata: left out while the sibling field ``sibling`` holds ``value``."""
    return {_MOOT: (sibling, value)}


def recorded_as(value: Any, old: Any) -> dict[str, Any]:
    """Field metadata: the field's ``value`` is recorded as ``old`` (its spelling before), in
    the settings and so in the fingerprint."""
    return {_RECORDED: (value, old)}


def plain(value: Any) -> Any:
    """JSON-able form of a value (tuples as lists, dataclasses as dicts, others as strings)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    return json.loads(json.dumps(value, default=str))


def settings(cfg: Any, *, ignore: Iterable[str] = (), keep_runtime: bool = False) -> Any:
    """The settings of the dataclass instance ``cfg`` that shape its output, as nested plain
    JSON (dicts, lists): fields are dropped by their metadata (see the module doc) and by the
    dotted keys in ``ignore``. Dataclasses inside lists/tuples are walked alike."""
    return _walk(cfg, "", frozenset(ignore), keep_runtime)


def _walk(value: Any, prefix: str, ignore: frozenset[str], keep_runtime: bool) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            key = f"{prefix}.{f.name}" if prefix else f.name
            if key in ignore or _dropped(value, f, keep_runtime):
                continue
            out[f.name] = _walk(_recorded(f, getattr(value, f.name)), key, ignore, keep_runtime)
        return out
    if isinstance(value, (list, tuple)) and any(dataclasses.is_dataclass(v) for v in value):
        return [_walk(v, prefix, frozenset(), keep_runtime) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _walk(v, f"{prefix}.{k}" if prefix else str(k), ignore, keep_runtime)
                for k, v in value.items() if (f"{prefix}.{k}" if prefix else str(k)) not in ignore}
    return plain(value)


def _recorded(f: dataclasses.Field, value: Any) -> Any:
    if _RECORDED in f.metadata:
        new, old = f.metadata[_RECORDED]
        if plain(value) == plain(new):
            return old
    return value


def _dropped(obj: Any, f: dataclasses.Field, keep_runtime: bool) -> bool:
    role = f.metadata.get(_ROLE)
    if role == "place" or (role == "runtime" and not keep_runtime):
        return True
    value = getattr(obj, f.name)
    if _ADDED in f.metadata and plain(value) == plain(f.metadata[_ADDED]):
        return True
    if _MOOT in f.metadata:
        sibling, moot = f.metadata[_MOOT]
        if plain(getattr(obj, sibling)) == plain(moot):
            return True
    return False


def added_later_fields(cls: type) -> dict[str, Any]:
    """``{dotted key: old value}`` of the :func:`added_later` fields of dataclass ``cls``."""
    out: dict[str, Any] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if _ADDED in f.metadata:
            out[f.name] = f.metadata[_ADDED]
        sub = hints.get(f.name)
        if isinstance(sub, type) and dataclasses.is_dataclass(sub):
            out.update({f"{f.name}.{k}": v for k, v in added_later_fields(sub).items()})
    return out


def flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one ``{"a.b": value}`` dict (lists are values; an empty dict is nothing)."""
    if not isinstance(tree, Mapping):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for k, v in tree.items():
        out.update(flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def digest(tree: Any, *, length: int | None = None, compact: bool = True) -> str:
    """SHA-256 of the settings as JSON with sorted keys (first ``length`` hex digits).
    ``compact=False`` hashes ``json.dumps``' default separators: the benchmark's stage
    fingerprints were made so, and are recorded in the settings of the stages downstream."""
    text = json.dumps(tree, sort_keys=True, default=str,
                      separators=(",", ":") if compact else None)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def differing_keys(old: Any, new: Any) -> list[str]:
    """Dotted keys (leaves) whose values differ between two settings trees, sorted."""
    a, b = flat(old or {}), flat(new or {})
    missing = object()
    return sorted(k for k in set(a) | set(b) if a.get(k, missing) != b.get(k, missing))


def describe_differences(old: Any, new: Any, limit: int = 6) -> str:
    """``key (old -> new), ...`` for the first ``limit`` differing keys (``-``: absent)."""
    a, b = flat(old or {}), flat(new or {})
    keys = differing_keys(old, new)
    shown = ", ".join(f"{k} ({a.get(k, '-')!r} -> {b.get(k, '-')!r})" for k in keys[:limit])
    return shown + (" ..." if len(keys) > limit else "")


__all__ = ["HISTORY_KEYS", "added_later", "added_later_fields", "describe_differences",
           "differing_keys", "digest", "flat", "moot_when", "not_shaping", "plain",
           "recorded_as", "runtime", "settings"]
