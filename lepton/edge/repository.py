"""Triton's model repository extension for ``lepton serve``: load a new version without a restart.

- ``POST /v2/repository/index`` (body optional, ``{"ready": true}`` lists only loaded versions): every version
  as ``{"name", "version", "state": "READY" | "UNAVAILABLE", "reason"}``; a version that failed to load or
  was unloaded is UNAVAILABLE with the reason.
- ``POST /v2/repository/models/NAME/load`` (``{"parameters": {"version": "3"}}`` optional): pulls, verifies
  and opens the model on a worker thread (the server keeps answering meanwhile), then swaps it in; requests
  already on a replaced version finish on it. A failure (bad SHA-256, unreadable model, unknown name) answers
  400 with the reason and changes nothing that is served.
- ``POST /v2/repository/models/NAME/unload`` (``{"parameters": {"version": "3"}}`` optional: default every
  version): stops answering NAME, lets requests in flight finish, then drops it.

Load and unload change what the server serves: they need the token when one is set (the gate asks for it on
every route but health), and a server exposed beyond loopback refuses them (403) unless
``allow_repository_control`` is set. One load or unload runs at a time.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from lepton.edge.guards import is_loopback
from lepton.edge.model_table import ModelTable
from lepton.edge.oip import ProtocolError

# (name, version or None) -> the opened model; blocking (a download, an ONNX Runtime session)
Loader = Callable[[str, str | None], Any]


async def _parameters(request: Request, allowed: set[str]) -> dict[str, Any]:
    body = await request.body()
    try:
        data = json.loads(body) if body.strip() else {}
    except ValueError as e:
        raise ProtocolError(400, f"the request body is not valid JSON: {e}") from None
    params = data.get("parameters", {}) if isinstance(data, dict) else None
    if not isinstance(params, dict):
        raise ProtocolError(400, 'the body must be a JSON object like {"parameters": {"version": "2"}}.')
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ProtocolError(
            400,
            f"unsupported parameter(s) {unknown}; lepton loads models from its registry and accepts only "
            f"{sorted(allowed)} (model configs and uploaded files are not supported).",
        )
    version = params.get("version")
    if version is not None and not isinstance(version, str | int):
        raise ProtocolError(400, f'parameters.version must be a string like "2"; got {version!r}.')
    return {**params, "version": None if version is None else str(version)}


def add_repository_routes(app: FastAPI, table: ModelTable, load: Loader | None, config: Any) -> None:
    """Add the three repository routes (module docstring) to ``app``.

    Args:
        app: the server's FastAPI application.
        table: the served models.
        load: opens a model by name and version (:meth:`lepton.edge.sources.ModelLoader.load`); None: loads
            answer 400.
        config: the :class:`lepton.edge.server.ServeConfig` (``host``, ``allow_repository_control``).
    """
    enabled = config.allow_repository_control or is_loopback(config.host)
    lock = asyncio.Lock()

    def check_enabled() -> None:
        if not enabled:
            raise ProtocolError(
                403,
                f"model loading and unloading is off on a server exposed beyond loopback (--host {config.host}); "
                "restart it with --allow-repository-control to allow it.",
            )

    @app.post("/v2/repository/index")
    async def repository_index(request: Request) -> JSONResponse:
        body = await request.body()
        try:
            ready = bool(json.loads(body).get("ready", False)) if body.strip() else False
        except (ValueError, AttributeError):
            raise ProtocolError(400, 'the index body must be empty or a JSON object like {"ready": true}.') from None
        return JSONResponse(table.index(ready_only=ready))

    @app.post("/v2/repository/models/{name}/load")
    async def repository_load(name: str, request: Request) -> Response:
        check_enabled()
        version = (await _parameters(request, {"version"}))["version"]
        if load is None:
            raise ProtocolError(400, "this server has no model source to load from; start it with lepton serve.")
        async with lock:
            try:
                model = await asyncio.to_thread(load, name, version)
            except Exception as e:  # any failure to get or open the model: reported, nothing served changes
                reason = f"{type(e).__name__}: {e}"
                table.fail(name, version, reason)
                asked = name if version is None else f"{name} version {version}"
                raise ProtocolError(400, f"failed to load {asked!r}: {reason}") from None
            await table.put(model)
        return Response(status_code=200)

    @app.post("/v2/repository/models/{name}/unload")
    async def repository_unload(name: str, request: Request) -> Response:
        check_enabled()
        version = (await _parameters(request, {"version", "unload_dependents"}))["version"]
        async with lock:
            await table.remove(name, version)
        return Response(status_code=200)
