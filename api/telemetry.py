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

from fastapi import FastAPI, Request, Response

from observability import current_context, new_context

log = logging.getLogger("walletflow.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def install(app: FastAPI, tracer_provider: Any | None = None) -> None:
    tracer = tracer_provider.get_tracer("walletflow.api") if tracer_provider else None

    @app.middleware("http")
    async def context(request: Request,
                      call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        given = request.headers.get("x-request-id", "")
        ctx = new_context(request_id=given if _REQUEST_ID.match(given) else
                          "req_" + uuid.uuid4().hex[:20])
        started = time.perf_counter()
        if tracer is None:
            response = await call_next(request)
        else:
            response = await _traced(tracer, request, call_next)
        seconds = time.perf_counter() - started
        route = getattr(request.scope.get("route"), "path", "unmatched")
        response.headers["X-Request-ID"] = ctx.request_id or ""
        request.app.state.metrics.observe(request, route, response.status_code, seconds)
        log.info("%s %s %s", request.method, route, response.status_code,
                 extra={"method": request.method, "route": route,
                        "status": response.status_code,
                        "duration_ms": round(seconds * 1000, 1)})
        return response


async def _traced(tracer: Any, request: Request,
                  call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    from opentelemetry import propagate, trace

    parent = propagate.extract(dict(request.headers))
    with tracer.start_as_current_span(f"{request.method} {request.url.path}", context=parent,
                                      kind=trace.SpanKind.SERVER) as span:
        span.set_attribute("http.request.method", request.method)
        span.set_attribute("url.path", request.url.path)
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", None)
        if route:
            span.update_name(f"{request.method} {route}")
            span.set_attribute("http.route", route)
        span.set_attribute("http.response.status_code", response.status_code)
        if response.status_code >= 500:
            span.set_status(trace.StatusCode.ERROR)
        ctx = current_context()
        if ctx and ctx.tenant_id:
            span.set_attribute("walletflow.tenant_id", ctx.tenant_id)
        if ctx and ctx.flow_id:
            span.set_attribute("walletflow.flow_id", ctx.flow_id)
        return response
