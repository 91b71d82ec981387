"""The one request middleware: a request id (the caller's ``X-Request-ID`` or a new one, echoed
back), the request's metrics (api/metrics.py), one access log line with tenant and flow id,
and — when tracing is configured — a server span that the Temporal client's interceptor
continues into the flow."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from observability import current_context, new_context

log = logging.getLogger("walletflow.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def install(app: FastAPI, tracer_provider: Any | None = None) -> None:
    tracer = tracer_provider.get_tracer("walletflow.api") if tracer_provider else None
    app.add_middleware(TelemetryMiddleware, tracer=tracer)


class TelemetryMiddleware:
    """Plain ASGI (no BaseHTTPMiddleware): the endpoint runs in the request's own task, with no
    extra task, stream or copy of the response per request."""

    def __init__(self, app: ASGIApp, tracer: Any | None = None) -> None:
        self.app, self.tracer = app, tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        given = request.headers.get("x-request-id", "")
        ctx = new_context(request_id=given if _REQUEST_ID.match(given) else
                          "req_" + uuid.uuid4().hex[:20])
        status = 500  # unless the app starts a response

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)["X-Request-ID"] = ctx.request_id or ""
            await send(message)

        started = time.perf_counter()
        try:
            if self.tracer is None:
                await self.app(scope, receive, send_with_id)
            else:
                await _traced(self.tracer, request, lambda: status,
                              self.app(scope, receive, send_with_id))
        finally:
            seconds = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", "unmatched")
            scope["app"].state.metrics.observe(request, route, status, seconds)
            log.info("%s %s %s", request.method, route, status,
                     extra={"method": request.method, "route": route, "status": status,
                            "duration_ms": round(seconds * 1000, 1)})


async def _traced(tracer: Any, request: Request, status: Callable[[], int],
                  call: Awaitable[None]) -> None:
    from opentelemetry import propagate, trace

    parent = propagate.extract(dict(request.headers))
    with tracer.start_as_current_span(f"{request.method} {request.url.path}", context=parent,
                                      kind=trace.SpanKind.SERVER) as span:
        span.set_attribute("http.request.method", request.method)
        span.set_attribute("url.path", request.url.path)
        try:
            await call
        finally:
            route = getattr(request.scope.get("route"), "path", None)
            if route:
                span.update_name(f"{request.method} {route}")
                span.set_attribute("http.route", route)
            span.set_attribute("http.response.status_code", status())
            if status() >= 500:
                span.set_status(trace.StatusCode.ERROR)
            ctx = current_context()
            if ctx and ctx.tenant_id:
                span.set_attribute("walletflow.tenant_id", ctx.tenant_id)
            if ctx and ctx.flow_id:
                span.set_attribute("walletflow.flow_id", ctx.flow_id)
