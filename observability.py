"""Structured logs and traces, shared by the API, the worker and the CLI.

Logs: one JSON object per line with ``tenant_id``, ``flow_id`` and ``request_id`` whenever they
are known (the API sets them per request; activities take them from Temporal's activity info;
workflow lines carry Temporal's workflow info). Secrets are scrubbed from every line before it is
written: API keys, Stripe keys and client secrets, webhook secrets, bearer tokens, card and bank
account numbers.

Traces: OpenTelemetry, off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``WALLETFLOW_TRACES=console``) is set. The API opens a server span per request (continuing a
``traceparent`` it receives); Temporal's contrib ``TracingInterceptor`` carries the context into
the workflow and its activities, so API → workflow → activities is one trace.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

import faultpoints

# -- request/flow context ---------------------------------------------------------------------


@dataclass
class LogContext:
    """Mutable, so a value set deeper in the request (the tenant, once the key is checked; the
    flow id, once derived) is seen by the middleware's access line too."""

    request_id: str | None = None
    tenant_id: str | None = None
    flow_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


_context: contextvars.ContextVar[LogContext | None] = contextvars.ContextVar(
    "walletflow_log_context", default=None)


def new_context(**values: Any) -> LogContext:
    ctx = LogContext(**values)
    _context.set(ctx)
    return ctx


def current_context() -> LogContext | None:
    return _context.get()


def bind(**values: str | None) -> None:
    """Attach tenant_id / flow_id / request_id to the current request's or activity's lines."""
    ctx = _context.get()
    if ctx is None:
        ctx = new_context()
    for k, v in values.items():
        setattr(ctx, k, v)


# -- redaction --------------------------------------------------------------------------------

_SECRETS = [
    (re.compile(r"\bwfk_[A-Za-z0-9]+[._][A-Za-z0-9_\-]+"), "wfk_[redacted]"),  # our API keys
    (re.compile(r"\b(sk|rk)_(test|live)_[A-Za-z0-9_]+"), r"\1_\2_[redacted]"),
    (re.compile(r"\b(pi|seti|pm)_[A-Za-z0-9]+_secret_[A-Za-z0-9]+"),
     r"\1_[redacted client secret]"),
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=_\-]+"), "whsec_[redacted]"),
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._\-]+"), r"\1 [redacted]"),
    (re.compile(r"(?i)(authorization|x-shopify-hmac-sha256|x-wc-webhook-signature|"
                r"stripe-signature|webhook-signature)(['\"]?\s*[:=]\s*['\"]?)[^'\",\s]+"),
     r"\1\2[redacted]"),
    # card numbers (13-19 digits, optionally grouped) and IBANs
    (re.compile(r"\b(?:\d[ -]?){12,18}\d\b"), "[redacted number]"),
    (re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b"), "[redacted iban]"),
]


def redact(text: str) -> str:
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


# -- JSON lines -------------------------------------------------------------------------------

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str):
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        ctx = _context.get()
        if ctx is not None:
            for k in ("request_id", "tenant_id", "flow_id"):
                if getattr(ctx, k):
                    out[k] = getattr(ctx, k)
            out.update(ctx.extra)
        wf = getattr(record, "temporal_workflow", None)
        if isinstance(wf, dict):
            out.setdefault("flow_id", wf.get("workflow_id"))
            out["workflow_type"] = wf.get("workflow_type")
            out["run_id"] = wf.get("run_id")
        act = getattr(record, "temporal_activity", None)
        if isinstance(act, dict):
            out.setdefault("flow_id", act.get("workflow_id"))
            out["activity_type"] = act.get("activity_type")
            out["attempt"] = act.get("attempt")
        for k, v in record.__dict__.items():
            if k not in _STANDARD and k not in out and not k.startswith("temporal_"):
                out[k] = v
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(out, default=str, separators=(",", ":")))


class RedactingTextFormatter(logging.Formatter):
    """Human-readable lines (LOG_FORMAT=text), with the request/flow context appended."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ctx = _context.get()
        if ctx is not None:
            known = [f"{k}={getattr(ctx, k)}" for k in ("request_id", "tenant_id", "flow_id")
                     if getattr(ctx, k)]
            if known:
                line += " [" + " ".join(known) + "]"
        return redact(line)


def configure_logging(service: str, level: str | None = None, fmt: str | None = None) -> None:
    """JSON lines on stderr (LOG_FORMAT=text for a human-readable format), LOG_LEVEL."""
    level = (level or os.environ.get("LOG_LEVEL") or "INFO").upper()
    fmt = (fmt or os.environ.get("LOG_FORMAT") or "json").lower()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service) if fmt == "json" else RedactingTextFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "stripe", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


# -- activities -------------------------------------------------------------------------------


class _ActivityContext(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        tenant = next((getattr(a, "tenant_id", None) for a in input.args
                       if getattr(a, "tenant_id", None)), None)
        new_context(flow_id=info.workflow_id, tenant_id=tenant,
                    extra={"activity_type": info.activity_type, "attempt": info.attempt})
        return await self.next.execute_activity(input)


class LogContextInterceptor(Interceptor):
    """Every log line an activity writes carries its flow id, tenant and attempt."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ActivityContext(next)


class _ActivityFaultPoints(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        where: dict[str, Any] = {"flow_id": info.workflow_id, "activity_id": info.activity_id,
                                 "attempt": info.attempt, "local": info.is_local}
        faultpoints.reached(f"before:{info.activity_type}", **where)
        result = await self.next.execute_activity(input)
        faultpoints.reached(f"after:{info.activity_type}", **where)
        return result


class FaultPointInterceptor(Interceptor):
    """The crash sweep's kill points around every activity and local activity
    (``faultpoints``: a no-op unless WALLETFLOW_FAULT_POINT or WALLETFLOW_FAULT_TRACE is set).
    Registered innermost, so ``after:`` is after the activity's own commit."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ActivityFaultPoints(next)


# -- traces -----------------------------------------------------------------------------------


def tracing_enabled() -> bool:
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
                or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                or os.environ.get("WALLETFLOW_TRACES"))


def tracer_provider_from_env(service: str) -> Any | None:
    """A TracerProvider exporting over OTLP/HTTP (or to the console with
    WALLETFLOW_TRACES=console); None when tracing is not configured."""
    if not tracing_enabled():
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    provider = TracerProvider(resource=Resource.create({
        "service.name": os.environ.get("OTEL_SERVICE_NAME", f"walletflow-{service}")}))
    if os.environ.get("WALLETFLOW_TRACES", "").lower() == "console":
        exporter: Any = ConsoleSpanExporter()
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def temporal_interceptors(tracer_provider: Any | None) -> list[Any]:
    """Client interceptors; a worker built on the client uses them too."""
    if tracer_provider is None:
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor(tracer_provider.get_tracer("walletflow.temporal"))]


# -- probes -----------------------------------------------------------------------------------


async def serve_probes(address: str, ready: Any) -> Any:
    """A minimal HTTP server for a process without a web framework (the worker):
    ``GET /healthz`` → 200 while the process is up; ``GET /readyz`` → 200 or 503 with the JSON
    of ``await ready()`` (a dict of check → "ok" or the reason). Returns the asyncio server."""
    import asyncio

    host, _, port = address.rpartition(":")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = (await asyncio.wait_for(reader.readline(), 5)).decode(errors="replace")
            while (await asyncio.wait_for(reader.readline(), 5)).strip():
                pass  # headers
            path = line.split(" ")[1] if line.count(" ") >= 2 else ""
            if path == "/healthz":
                status, body = 200, {"status": "ok"}
            elif path == "/readyz":
                checks = await ready()
                ok = all(v == "ok" for v in checks.values())
                status, body = (200 if ok else 503), {
                    "status": "ready" if ok else "unready", "checks": checks}
            else:
                status, body = 404, {"title": "not found"}
            data = json.dumps(body).encode()
            reason = {200: "OK", 503: "Service Unavailable", 404: "Not Found"}[status]
            writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
                         + data)
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host or "127.0.0.1", int(port))
