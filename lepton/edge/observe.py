"""What ``lepton serve`` tells its operators: Prometheus metrics (served at ``/metrics``) and an optional
JSON access log, one line per request on stderr, for HTTP and gRPC alike.

Metrics (each server has its own registry, so several servers in one process do not mix):

- ``lepton_requests_total{protocol, status}``: finished requests; ``protocol`` is ``http`` or ``grpc``,
  ``status`` the HTTP status code or the gRPC status name (``OK``, ``INVALID_ARGUMENT`` ...).
- ``lepton_request_seconds{protocol}``: request latency histogram, from the request's arrival to its answer.
- ``lepton_requests_in_flight{protocol}``: requests arrived and not yet answered.
- ``lepton_batch_rows{model, version}``: rows per model call (histogram); ``lepton_queue_depth{model, version}``:
  requests waiting for the model; ``lepton_model_requests_total{model, version}``: inferences each version took.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Literal

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

METRICS_ROUTE = "/metrics"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class ServerMetrics:
    """The server's Prometheus metrics and its access log (``access_log="json"``: one line per request)."""

    def __init__(self, access_log: Literal["none", "json"] = "none") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("lepton_requests", "finished requests", ["protocol", "status"], registry=self.registry)
        self.latency = Histogram(
            "lepton_request_seconds", "request latency", ["protocol"], buckets=LATENCY_BUCKETS, registry=self.registry
        )
        self.batch_rows = Histogram(
            "lepton_batch_rows",
            "rows per model call",
            ["model", "version"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.model_requests = Counter(
            "lepton_model_requests", "inferences each model version took", ["model", "version"], registry=self.registry
        )
        self.in_flight = Gauge(
            "lepton_requests_in_flight", "requests arrived, not yet answered", ["protocol"], registry=self.registry
        )
        self.queue_depth = Gauge(
            "lepton_queue_depth", "requests waiting for the model", ["model", "version"], registry=self.registry
        )
        self.access_log = access_log

    def started(self, protocol: str) -> float:
        """Count a request in flight; returns its start time for :meth:`finished`."""
        self.in_flight.labels(protocol).inc()
        return time.perf_counter()

    def finished(self, protocol: str, status: str, started: float, **fields: Any) -> None:
        """Count a finished request (``started``: from :meth:`started`) and log it."""
        seconds = time.perf_counter() - started
        self.in_flight.labels(protocol).dec()
        self.requests.labels(protocol, status).inc()
        self.latency.labels(protocol).observe(seconds)
        if self.access_log == "json":
            line = {"time": time.time(), "protocol": protocol, "status": status, "ms": round(seconds * 1000, 3)}
            sys.stderr.write(json.dumps({**line, **fields}) + "\n")

    def exposition(self) -> tuple[bytes, str]:
        """The metrics in Prometheus' text format, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class Observe:
    """Pure ASGI middleware that counts, times and (optionally) logs every HTTP request except ``/metrics``."""

    def __init__(self, app: Any, metrics: ServerMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] == METRICS_ROUTE:
            return await self.app(scope, receive, send)
        started, status = self.metrics.started("http"), 500  # 500 if the app fails before it answers

        async def watch(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            client = scope.get("client")
            self.metrics.finished(
                "http",
                str(status),
                started,
                method=scope["method"],
                path=scope["path"],
                client=f"{client[0]}:{client[1]}" if client else None,
            )
