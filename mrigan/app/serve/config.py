"""What ``mrigan serve`` is started with (:class:`ServeConfig`) and the checks made before it
listens: a token whenever it listens beyond the loopback interface, and case and media folders
that do not hold one another.

Ranges are ``bounds`` metadata (:class:`mrigan.config.Checked`), checked whenever a
:class:`ServeConfig` is built (a :class:`ServeError` naming the field); the command line checks
each flag against the field it sets first, so its one-line error names the flag
(:mod:`mrigan.app.commands.serve`)."""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path

from mrigan.config import Checked, ConfigError, bounds

#: Host names of this machine's loopback interface (answered when serving on loopback).
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})

DEFAULT_MAX_UPLOAD_MB = 2048


class ServeError(ConfigError):
    """A bad ``mrigan serve`` setting."""


@dataclass(frozen=True)
class ServeConfig(Checked):
    cases: Path  # one folder per case (``analyze --out`` layout) + case.json
    media_root: Path | None = None  # server-side files the page may pick (read only)
    host: str = "127.0.0.1"
    port: int = field(default=8765, metadata=bounds(minimum=0, maximum=65535))  # 0: any free
    token: str | None = None  # required (generated when not given) off the loopback interface
    workers: int = field(default=1, metadata=bounds(minimum=1))  # analyses at once
    # positive in any unit: the command line checks its MiB flag against this rule
    max_upload_bytes: int = field(default=DEFAULT_MAX_UPLOAD_MB * 1024 * 1024,
                                  metadata=bounds(exclusive_minimum=0))

    def __post_init__(self) -> None:
        try:
            super().__post_init__()
        except ConfigError as exc:
            raise ServeError(exc.problem) from exc

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    def allowed_hosts(self) -> frozenset[str] | None:
        """Host names answered: the loopback names on loopback, any name beyond it (the token
        guards it then)."""
        return LOOPBACK_NAMES | {self.host} if self.loopback else None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: treated as reachable from elsewhere


def checked(cfg: ServeConfig) -> tuple[ServeConfig, bool]:
    """``cfg`` (its ranges checked when it was built) with resolved folders and a token where
    one is needed; True when the token was generated here (the caller prints it). Raises
    :class:`ServeError`."""
    if cfg.cases.exists() and not cfg.cases.is_dir():
        raise ServeError("--cases must be a folder, but a file of that name exists", cfg.cases)
    cases = cfg.cases.resolve()
    media = None
    if cfg.media_root is not None:
        if not cfg.media_root.is_dir():
            raise ServeError("--media-root is not a folder", cfg.media_root)
        media = cfg.media_root.resolve()
        if cases == media or media in cases.parents or cases in media.parents:
            raise ServeError(f"--cases ({cases}) and --media-root ({media}) must not hold one "
                             "another: cases are written, media are only read")
    token, generated = cfg.token, False
    if token is not None and len(token) < 16:
        raise ServeError("--token must be at least 16 characters")
    if token is None and not is_loopback(cfg.host):
        token, generated = secrets.token_urlsafe(24), True
    return replace(cfg, cases=cases, media_root=media, token=token), generated
