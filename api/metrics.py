"""Prometheus metrics of the API: requests by route and status with latency histograms, flows
started by kind. The worker exposes the Temporal SDK's own metrics (WORKER_METRICS_ADDRESS)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request, Response
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

    def observe(self, request: Request, route: str, status: int, seconds: float) -> None:
        """One finished request (called by the request middleware, api/telemetry.py)."""
        self.requests.labels(request.method, route, str(status)).inc()
        self.latency.labels(request.method, route).observe(seconds)
        if route.startswith("/v1/webhooks/"):
            self.webhooks_in.labels(route.rsplit("/", 1)[-1], str(status)).inc()
        if request.method == "POST" and status in (200, 201, 202) and (
                request.headers.get("idempotency-key")):
            self.flows.labels(route.strip("/").split("/")[1] if "/" in route.strip("/")
                              else route).inc()


def install(app: FastAPI) -> None:
    app.state.metrics = ApiMetrics()


async def _metrics(request: Request) -> ApiMetrics:
    metrics: ApiMetrics = request.app.state.metrics
    return metrics


Metrics = Annotated[ApiMetrics, Depends(_metrics)]


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=True)
async def metrics(registry: Metrics) -> Response:
    return Response(generate_latest(registry.registry), media_type=CONTENT_TYPE_LATEST)
