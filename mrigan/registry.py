"""The one small registry class every package uses to pick a component by name."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from mrigan.errors import MriganError


class UnknownNameError(MriganError, KeyError):
    """A component name (from a config or a file) that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return Exception.__str__(self)


class Registry:
    """Maps names to factories: ``BACKBONES = Registry("backbone")``.

    >>> LOSSES = Registry("loss")
    >>> @LOSSES.register("l2")
    ... def l2(a, b): return ((a - b) ** 2).mean()
    >>> LOSSES.get("l2") is l2
    True
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, Callable[..., Any]] = {}

    def register(self, name: str, obj: Callable[..., Any] | None = None):
        """Register ``obj`` under ``name``; usable as a decorator when ``obj`` is omitted."""

        def add(item: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._items:
                raise KeyError(f"{self.kind} {name!r} is already registered")
            self._items[name] = item
            return item

        return add(obj) if obj is not None else add

    def unregister(self, name: str) -> Callable[..., Any]:
        """Remove and return ``name`` (a plugin unloaded, a test's own component)."""
        self.get(name)  # an unknown name: the usual error
        return self._items.pop(name)

    def get(self, name: str) -> Callable[..., Any]:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "(none)"
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def build(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self.get(name)(*args, **kwargs)

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
