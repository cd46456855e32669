"""The inference route of ``lepton serve`` as a pure ASGI app in front of FastAPI: ``POST
/v2/models/{name}/infer`` and ``POST /v2/models/{name}/versions/{version}/infer`` skip FastAPI's routing,
dependency solving and exception layers (most of a small request's CPU time); every other request goes on to
FastAPI. It sits behind the :class:`lepton.edge.guards.Gate` (token, concurrency limit) and
:class:`lepton.edge.observe.Observe` (metrics, access log) middlewares, as FastAPI does, and it answers
exactly what the FastAPI route answers: the same body limit (413 on a declared or actual body over
``max_body_bytes``), the same byte budget, the same handler and the same ``{"error": ...}`` responses.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from lepton.edge.guards import error_response
from lepton.edge.oip import ProtocolError

# Starlette's "{name}" path parameter matches "[^/]+"; the FastAPI routes have the same two shapes.
INFER_PATH = re.compile(r"/v2/models/([^/]+)(?:/versions/([^/]+))?/infer")

# (what admission yielded: the model version, the request's headers, the body) -> (response body, response headers)
InferHandler = Callable[[Any, dict[str, str], bytes], Awaitable[tuple[bytes, dict[str, str]]]]
# (name, version or None, declared Content-Length or None) -> an async context manager held while the request is
# read and answered; it yields the model version that answers
BodyAdmission = Callable[[str, str | None, str | None], Any]


class ClientGone(Exception):
    """The client disconnected before its request body arrived: there is no one to answer."""


def body_too_large(limit: int, declared: str | None = None) -> ProtocolError:
    size = "" if declared is None else f" ({declared} bytes)"
    return ProtocolError(
        413,
        f"the request body{size} is larger than the server's limit of {limit} bytes; send fewer samples per request.",
    )


async def receive_body(receive: Callable[[], Awaitable[dict[str, Any]]], limit: int) -> bytes:
    """The whole request body from ASGI ``receive``; a 413 as soon as it passes ``limit`` bytes."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise body_too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class InferRoute:
    """Pure ASGI middleware: the inference routes straight to ``handler``, everything else to ``app``.

    Args:
        app: the FastAPI application (every other route, and its error handling).
        handler: answers a parsed request; raises :class:`ProtocolError` for a 4xx/5xx.
        admit: looks the model up, checks the declared length and holds the body's share of the byte budget.
        max_body_bytes: the body limit (413 beyond it).
        on_refusal: called with the status of every error answered here (the server's 4xx statistics).
    """

    def __init__(
        self,
        app: Any,
        handler: InferHandler,
        admit: BodyAdmission,
        max_body_bytes: int,
        on_refusal: Callable[[int], None],
    ) -> None:
        self.app, self.handler, self.admit, self.limit, self.on_refusal = (
            app,
            handler,
            admit,
            max_body_bytes,
            on_refusal,
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        match = None
        if scope["type"] == "http" and scope["method"] == "POST":
            match = INFER_PATH.fullmatch(scope["path"])
        if match is None:
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in reversed(scope["headers"])}  # first wins
        try:
            async with self.admit(match[1], match[2], headers.get("content-length")) as target:
                body = await receive_body(receive, self.limit)
                content, extra = await self.handler(target, headers, body)
        except ClientGone:
            return
        except ProtocolError as e:
            self.on_refusal(e.status)
            return await error_response(e.status, e.message)(scope, receive, send)
        except Exception as e:  # the same answer as the FastAPI app's catch-all handler
            return await error_response(500, f"internal server error: {type(e).__name__}: {e}")(scope, receive, send)
        raw = [(b"content-length", str(len(content)).encode())]
        raw += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in extra.items()]
        await send({"type": "http.response.start", "status": 200, "headers": raw})
        await send({"type": "http.response.body", "body": content})


class ServerApp:
    """The server's ASGI application: ``asgi`` (the guards, then the routes) in front of the FastAPI ``app``,
    whose ``state`` it shares (the batcher's statistics, the metrics, the gRPC port, the drain hooks)."""

    def __init__(self, asgi: Any, app: Any) -> None:
        self.asgi, self.app, self.state = asgi, app, app.state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.asgi(scope, receive, send)
