"""The HTTP server's guards (see docs/edge.md, "Limits and hardening"): who may bind where without a token, the
shared byte budget for request bodies, the bearer-token and concurrency gate, and uvicorn's HTTP protocol with
read deadlines."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi.responses import JSONResponse

from lepton.edge.oip import ProtocolError
from lepton.errors import ConfigError

BUDGET_WAIT_S = 5.0  # how long a request waits for its share of max_inflight_bytes before a 503
OPEN_ROUTES = "/v2/health/"  # liveness/readiness probes never need the token


def error_response(status: int, message: str) -> JSONResponse:
    headers = (
        {"retry-after": "1"}
        if status == 503
        else {"www-authenticate": 'Bearer realm="lepton"'}
        if status == 401
        else None
    )
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(config: Any) -> None:
    """Refuse to serve other machines without authentication unless ``no_auth`` says so explicitly."""
    if config.token is not None and config.no_auth:
        raise ConfigError("--token and --no-auth contradict each other; pass one of them.")
    if config.token is None and not config.no_auth and not is_loopback(config.host):
        raise ConfigError(
            f"--host {config.host} accepts connections from other machines but no token is set; pass "
            "--token TOKEN (or set LEPTON_SERVE_TOKEN), or --no-auth to serve without authentication."
        )


class ByteBudget:
    """At most ``capacity`` bytes of request bodies held at once; a request waits up to ``wait_s`` for its share."""

    def __init__(self, capacity: int, wait_s: float) -> None:
        self.capacity, self.wait_s, self.used, self.waiting = capacity, wait_s, 0, 0
        self._freed = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def hold(self, size: int) -> AsyncIterator[None]:
        size = min(size, self.capacity)  # one request alone always fits
        if self.waiting or self.used + size > self.capacity:  # queue behind those already waiting
            await self._wait_for(size)
        self.used += size  # the event loop runs one task at a time: no lock needed to take a free share
        try:
            yield
        finally:
            self.used -= size
            if self.waiting:
                async with self._freed:
                    self._freed.notify_all()

    async def _wait_for(self, size: int) -> None:
        self.waiting += 1
        try:
            async with self._freed:
                await asyncio.wait_for(self._freed.wait_for(lambda: self.used + size <= self.capacity), self.wait_s)
        except TimeoutError:
            raise ProtocolError(
                503,
                f"the server is busy: {self.used} bytes of request bodies are being "
                f"processed (limit {self.capacity}); retry in a moment.",
            ) from None
        finally:
            self.waiting -= 1


class Gate:
    """Pure ASGI middleware: the bearer token (every route but ``/v2/health/*``) and the limit on requests
    handled at once (uvicorn's own limit would count idle and half-open connections too)."""

    def __init__(self, app: Any, token: str | None, max_requests: int) -> None:
        self.app, self.max_requests, self.active = app, max_requests, 0
        self.token = None if token is None else token.encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith(OPEN_ROUTES):
            return await self.app(scope, receive, send)
        if self.token is not None and not self._authorized(scope["headers"]):
            return await error_response(
                401,
                "this server needs 'Authorization: Bearer TOKEN' with the token it was "
                "started with (--token or LEPTON_SERVE_TOKEN).",
            )(scope, receive, send)
        if self.active >= self.max_requests:
            return await error_response(
                503, f"the server is handling {self.active} requests, its limit; retry in a moment."
            )(scope, receive, send)
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1

    def _authorized(self, headers: list[tuple[bytes, bytes]]) -> bool:
        value = next((v for k, v in headers if k == b"authorization"), b"")
        scheme, _, credentials = value.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(), self.token)


_TIMEOUT_BODY = json.dumps({"error": "the request did not arrive in time; the connection is closed."}).encode()
_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: %d\r\n\r\n%s" % (len(_TIMEOUT_BODY), _TIMEOUT_BODY)
)


class CorkedTransport:
    """A transport whose writes within one turn of the event loop leave in one send: uvicorn writes a
    response's head and body separately, and on loopback each send (a syscall that wakes the peer) cost more
    than parsing the request. Everything else is the wrapped transport's."""

    def __init__(self, transport: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._transport, self._loop, self._pending = transport, loop, []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)

    def writelines(self, chunks: Any) -> None:
        for data in chunks:
            self.write(data)

    def flush(self) -> None:
        if self._pending:
            data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
            self._pending.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def guarded_protocol(config: Any) -> type:
    """uvicorn's HTTP protocol (``config.http``: ``httptools``, the C parser, or ``h11``) with read deadlines: a
    connection has ``header_timeout_s`` from its start (or from its last response) to deliver a request's
    headers, then ``body_timeout_s`` for the body; past either it gets a 408 and is closed. Beyond
    ``max_open_connections`` the oldest connection still sending headers is closed. Responses leave in one send
    (:class:`CorkedTransport`)."""
    import h11  # the h11 protocol's states (uvicorn depends on h11 either way)

    if getattr(config, "http", "h11") == "httptools":
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as Base
    else:
        from uvicorn.protocols.http.h11_impl import H11Protocol as Base

    class GuardedProtocol(Base):
        _timer: asyncio.TimerHandle | None = None
        _phase: str | None = None  # "headers" or "body" while the client owes us bytes
        _since = 0.0
        _reading: str | None = None  # httptools: "headers" or "body" while a request is being parsed

        def connection_made(self, transport: Any) -> None:
            super().connection_made(CorkedTransport(transport, self.loop))
            self._track()
            if len(self.connections) > config.max_open_connections:
                waiting = [c for c in self.connections if isinstance(c, GuardedProtocol) and c._phase == "headers"]
                if waiting:
                    min(waiting, key=lambda c: c._since).expire()

        def connection_lost(self, exc: Exception | None) -> None:
            self._set_phase(None)
            super().connection_lost(exc)

        def handle_events(self) -> None:  # h11
            super().handle_events()
            self._track()

        def on_message_begin(self) -> None:  # httptools
            super().on_message_begin()
            self._reading = "headers"

        def on_headers_complete(self) -> None:  # httptools
            super().on_headers_complete()
            self._reading = "body"
            self._track()

        def on_message_complete(self) -> None:  # httptools
            super().on_message_complete()
            self._reading = None
            self._track()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._track()

        def _track(self) -> None:
            if Base.__name__ == "H11Protocol":
                state = self.conn.their_state
                phase = "headers" if state is h11.IDLE else "body" if state is h11.SEND_BODY else None
            elif self._reading is not None:
                phase = self._reading
            else:  # between requests: waiting for the next one unless a response is still being made
                phase = "headers" if self.cycle is None or self.cycle.response_complete else None
            self._set_phase(phase)

        def _set_phase(self, phase: str | None) -> None:
            if phase == self._phase:
                return
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._phase, self._since = phase, self.loop.time()
            if phase is not None:
                limit = config.header_timeout_s if phase == "headers" else config.body_timeout_s
                self._timer = self.loop.call_later(limit, self.expire)

        def expire(self) -> None:
            self._set_phase(None)
            if not self.transport.is_closing():
                if self.cycle is None or not self.cycle.response_started:
                    self.transport.write(_TIMEOUT_RESPONSE)
                self.transport.close()

    return GuardedProtocol
