"""The gate in front of every route of ``mrigan serve`` (an ASGI middleware).

* Token: when the server has one (always when it listens beyond the loopback interface), every
  request carries it as the ``X-Mrigan-Token`` header, ``Authorization: Bearer``, or the
  ``mrigan_token`` cookie; ``GET /?token=T`` sets that cookie (HttpOnly, SameSite=Strict) and
  sends the browser on to ``/`` so the token leaves the address bar. Compared in constant time.
* Host: on the loopback interface only loopback host names are answered (a page elsewhere
  cannot reach the server through a DNS name it controls).
* Origin: a POST or DELETE sent by a browser must come from this server's own page.
* Body size: a request body over ``max_body`` bytes is refused (413), by its Content-Length at
  once, else while it streams.
* Every response says ``nosniff`` and sends no referrer.
"""

from __future__ import annotations

import hmac
import json
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

TOKEN_HEADER = "x-mrigan-token"
TOKEN_COOKIE = "mrigan_token"


class BodyTooLarge(Exception):
    """A request body that went over the server's limit while streaming."""


class Gate:
    def __init__(self, app: ASGIApp, *, token: str | None, max_body: int,
                 allowed_hosts: frozenset[str] | None) -> None:
        self.app = app
        self.token = token
        self.max_body = max_body
        self.allowed_hosts = allowed_hosts  # None: any host name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        login = scope["method"] == "GET" and scope["path"] == "/" and self.token is not None
        if login:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            login = "token" in query and _same(query["token"][0], self.token)
        refusal = self._refusal(scope, headers, login)
        if refusal is not None:
            await _json(send, *refusal)
            return
        if login:
            await _login(send, self.token)
            return
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body:
            await _json(send, 413, f"request body over the limit of {self.max_body} bytes")
            return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise BodyTooLarge()
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"],
                                      (b"x-content-type-options", b"nosniff"),
                                      (b"referrer-policy", b"no-referrer")]
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except BodyTooLarge:
            if not started:
                await _json(send, 413, f"request body over the limit of {self.max_body} bytes")

    def _refusal(self, scope: Scope, headers: dict[str, str], login: bool,
                 ) -> tuple[int, str] | None:
        host = headers.get("host", "")
        if self.allowed_hosts is not None and _hostname(host) not in self.allowed_hosts:
            return 421, f"this server answers on {', '.join(sorted(self.allowed_hosts))} only"
        if scope["method"] in ("POST", "DELETE", "PUT", "PATCH"):
            origin = headers.get("origin")
            if origin is not None and urlsplit(origin).netloc != host:
                return 403, "refused: a request from another site's page"
        if self.token is None or login:
            return None
        given = _given_token(headers)
        if given is None or not _same(given, self.token):
            return 401, ("missing or wrong token: send it as the X-Mrigan-Token header, or open "
                         "the address with ?token=... that `mrigan serve` printed")
        return None


def _same(given: str, token: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "replace"), token.encode("utf-8"))


def _given_token(headers: dict[str, str]) -> str | None:
    if TOKEN_HEADER in headers:
        return headers[TOKEN_HEADER]
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    cookie = SimpleCookie()
    try:
        cookie.load(headers.get("cookie", ""))
    except Exception:  # noqa: BLE001 - a malformed cookie header is no token
        return None
    morsel = cookie.get(TOKEN_COOKIE)
    return morsel.value if morsel is not None else None


def _hostname(host: str) -> str:
    """The name part of a Host header (``[::1]:8765`` -> ``::1``)."""
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


async def _json(send: Send, status: int, error: str) -> None:
    body = json.dumps({"error": error}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"x-content-type-options", b"nosniff")]})
    await send({"type": "http.response.body", "body": body})


async def _login(send: Send, token: str) -> None:
    cookie = f"{TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
    await send({"type": "http.response.start", "status": 303,
                "headers": [(b"location", b"/"), (b"set-cookie", cookie.encode()),
                            (b"content-length", b"0"), (b"referrer-policy", b"no-referrer")]})
    await send({"type": "http.response.body", "body": b""})
