"""Prometheus metrics of the API: requests by route and status with latency histograms, flows
started by kind. The worker exposes the Temporal SDK's own metrics (WORKER_METRICS_ADDRESS)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, FastAPI, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

router = APIRouter(tags=["health"])


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("walletflow_http_requests_total", "HTTP requests",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("walletflow_http_request_duration_seconds",
                                 "HTTP request latency", ["method", "route"],
                                 registry=self.registry)
        self.flows = Counter("walletflow_flows_started_total", "Flows started",
                             ["kind"], registry=self.registry)
        self.webhooks_in = Counter("walletflow_webhooks_received_total",
                                   "Gateway/store webhooks received", ["source", "status"],
                                   registry=self.registry)


def install(app: FastAPI) -> None:
    metrics = ApiMetrics()
    app.state.metrics = metrics

    @app.middleware("http")
    async def measure(request: Request,
                      call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        metrics.requests.labels(request.method, path, str(response.status_code)).inc()
        metrics.latency.labels(request.method, path).observe(time.perf_counter() - started)
        if path.startswith("/v1/webhooks/"):
            metrics.webhooks_in.labels(path.rsplit("/", 1)[-1], str(response.status_code)).inc()
        if request.method == "POST" and response.status_code in (200, 201, 202) and (
                request.headers.get("idempotency-key")):
            metrics.flows.labels(path.strip("/").split("/")[1] if "/" in path.strip("/")
                                 else path).inc()
        return response


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=True)
async def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry),
                    media_type=CONTENT_TYPE_LATEST)
