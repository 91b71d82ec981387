"""ops/grafana/walletflow.json only charts metrics walletflow really exports: every PromQL `expr`
is parsed, its metric names extracted, and each must be one the code registers (read from the
source) or a Temporal SDK metric listed here — and is then found on a real scrape: the session
API's /metrics after a request, and a worker's Prometheus endpoint after a delivery ran."""

from __future__ import annotations

import ast
import functools
import json
import re
import secrets
import socket
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from contracts.webhooks import DeliveryInput
from tests.support import Tenant
from worker import build_gateways, build_worker
from workflows.webhook_delivery import WebhookDeliveryWorkflow

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "ops" / "grafana" / "walletflow.json"
PRODUCT = ("api", "activities", "workflows", "worker.py", "dispatcher.py")
# The Temporal SDK's own worker metrics the dashboard charts (histograms in milliseconds).
SDK_METRICS = {
    "temporal_workflow_task_schedule_to_start_latency_bucket",
    "temporal_workflow_task_execution_latency_bucket",
    "temporal_activity_schedule_to_start_latency_bucket",
    "temporal_activity_execution_latency_bucket",
    "temporal_activity_execution_failed",
    "temporal_worker_task_slots_available",
}
FUNCTIONS = {"rate", "irate", "increase", "sum", "avg", "max", "min", "count", "topk",
             "histogram_quantile", "clamp_min", "clamp_max", "abs", "delta", "deriv",
             "label_replace", "vector", "scalar", "avg_over_time", "max_over_time"}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and",
            "or", "unless", "offset", "le"}
SUFFIXES = {  # what each kind of metric is exposed as (prometheus_client / Temporal's exporter)
    "Counter": ("_total", "_created"), "Histogram": ("_bucket", "_count", "_sum", "_created"),
    "Gauge": ("",), "Summary": ("_count", "_sum", "_created"),
    "create_counter": ("",), "create_gauge": ("",),
    "create_histogram": ("_bucket", "_count", "_sum"),
    "create_histogram_float": ("_bucket", "_count", "_sum"),
    "create_histogram_timedelta": ("_bucket", "_count", "_sum"),
}


def exprs() -> list[str]:
    found: list[str] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for p in panels:
            found.extend(t["expr"] for t in p.get("targets", []))
            walk(p.get("panels", []))

    walk(json.loads(DASHBOARD.read_text())["panels"])
    return found


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects; fails on an expression that doesn't parse
    (unbalanced delimiters, an unknown function, a selector without a metric name)."""
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    depth = {"(": 0, "{": 0, "[": 0}
    closing = {")": "(", "}": "{", "]": "["}
    for ch in bare:
        if ch in depth:
            depth[ch] += 1
        elif ch in closing:
            depth[closing[ch]] -= 1
            assert depth[closing[ch]] >= 0, f"unbalanced {ch!r} in {expr}"
    assert set(depth.values()) == {0}, f"unbalanced delimiters in {expr}"
    bare = re.sub(r"\{[^}]*\}", "{}", bare)  # label matchers
    bare = re.sub(r"\[[^\]]*\]", "[]", bare)  # range selectors
    bare = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1", bare)
    names: set[str] = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", bare):
        word, rest = m.group(), bare[m.end():].lstrip()
        if rest.startswith("(") and word not in KEYWORDS:
            assert word in FUNCTIONS, f"unknown function {word!r} in {expr}"
        elif word not in KEYWORDS and word not in FUNCTIONS:
            names.add(word)
    assert not re.search(r"(^|[^\w])\{", bare), f"a selector without a metric name in {expr}"
    return names


@functools.cache
def registered() -> dict[str, str]:
    """The names the code registers — prometheus_client metrics and Temporal metric-meter
    instruments, with the suffixes they are exposed with — and the package registering each
    (`api`: on the API's /metrics; any other: on the worker's endpoint)."""
    names: dict[str, str] = {}
    files = [p for entry in PRODUCT for p in
             ((ROOT / entry).rglob("*.py") if (ROOT / entry).is_dir() else [ROOT / entry])]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and node.args
                    and isinstance(node.args[0], ast.Constant)):
                continue
            kind = node.func.attr if isinstance(node.func, ast.Attribute) else (
                node.func.id if isinstance(node.func, ast.Name) else "")
            if kind in SUFFIXES and isinstance(node.args[0].value, str):
                base = node.args[0].value.removesuffix("_total")
                top = path.relative_to(ROOT).parts[0]
                names |= {base + s: top for s in SUFFIXES[kind]}
    return names


# Parsed once, at import: CPython 3.11.7's ast.parse can fail with "AST constructor recursion
# depth mismatch" when called deep inside a running event loop's stack.
registered()


def charted() -> set[str]:
    return {name for e in exprs() for name in metric_names(e)}


def exposed(body: str) -> set[str]:
    """Every sample name a Prometheus text exposition carries, as written (a parser would
    rename counters), plus the names a `# TYPE` line declares for a family with no samples
    yet (prometheus_client's labelled metrics before their first observation)."""
    lines = body.splitlines()
    names = {re.split(r"[{\s]", line, maxsplit=1)[0] for line in lines
             if line and not line.startswith("#")}
    for line in lines:
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            base = name.removesuffix("_total") if kind == "counter" else name
            if not any(n == base or n.startswith(base + "_") for n in names):
                names |= {base + s for s in SUFFIXES.get(kind.capitalize(), ())}
    return names


def test_every_expression_parses_and_charts_exported_metrics() -> None:
    assert len(exprs()) >= 15
    assert all(metric_names(e) for e in exprs())
    assert charted() - set(registered()) - SDK_METRICS == set()
    for wanted in ("walletflow_flows_started", "walletflow_flows_finished",
                   "walletflow_ledger_transfers", "walletflow_webhook_deliveries",
                   "walletflow_http_requests_total",
                   "walletflow_http_request_duration_seconds_bucket"):
        assert wanted in charted(), wanted


def test_the_name_extraction_sees_through_promql() -> None:
    assert metric_names('histogram_quantile(0.9, sum by (route, le) (rate(a_bucket{job=~"x",'
                        ' s="5.."}[5m]))) / b_total') == {"a_bucket", "b_total"}
    assert metric_names("sum by (kind) (c)") == {"c"}
    with pytest.raises(AssertionError):
        metric_names("sum(rate(a[5m])")
    with pytest.raises(AssertionError):
        metric_names("nosuchfn(a)")


async def test_the_api_exposes_what_the_dashboard_charts(http) -> None:
    assert (await http.get("/healthz")).status_code == 200
    body = (await http.get("/metrics")).text
    api_side = {n for n in charted() if registered().get(n) == "api"}
    assert api_side - exposed(body) == set()
    assert {"walletflow_http_requests_total",
            "walletflow_http_request_duration_seconds_bucket"} <= api_side


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _refused_delivery(sessions, tenant: Tenant) -> str:
    """A delivery to a non-public address, ready for a worker of its own (the session
    dispatcher leaves it alone: its event is dispatched and the delivery started)."""
    delivery_id = "msg_dash_" + secrets.token_hex(6)
    async with sessions.begin() as s:
        await s.execute(text(
            "INSERT INTO webhook_endpoints (id, tenant_id, url, event_types, secret) VALUES "
            "(:e, :t, 'https://127.0.0.3/h', '{}', 'whsec_eA==')"),
            {"e": "we_" + delivery_id, "t": tenant.id})
        event = (await s.execute(text(
            "INSERT INTO outbox_events (tenant_id, event_key, type, payload, dispatched_at) "
            "VALUES (:t, :k, 'dash.test', '{}', now()) RETURNING id"),
            {"t": tenant.id, "k": delivery_id})).scalar_one()
        await s.execute(text(
            "INSERT INTO webhook_deliveries (id, tenant_id, endpoint_id, event_id, started_at) "
            "VALUES (:d, :t, :e, :ev, now())"),
            {"d": delivery_id, "t": tenant.id, "e": "we_" + delivery_id, "ev": event})
    return delivery_id


async def test_a_worker_exposes_what_the_dashboard_charts(
        temporal_address, settings, sessions, tenant) -> None:
    port = _free_port()
    runtime = Runtime(telemetry=TelemetryConfig(
        metrics=PrometheusConfig(bind_address=f"127.0.0.1:{port}")))
    client = await Client.connect(temporal_address, runtime=runtime)
    queue = "dashboard-" + secrets.token_hex(4)
    gateways = build_gateways(settings)
    delivery_id = await _refused_delivery(sessions, tenant)
    async with build_worker(client, queue, sessions, gateways):
        result = await client.execute_workflow(
            WebhookDeliveryWorkflow.run, DeliveryInput(delivery_id, tenant.id),
            id=delivery_id, task_queue=queue, execution_timeout=timedelta(seconds=60))
        assert "destination refused: 127.0.0.3" in result
        async with httpx.AsyncClient() as c:
            body = (await c.get(f"http://127.0.0.1:{port}/metrics")).text
    for gw in gateways.values():
        await gw.close()
    worker_side = {n for n in charted() if registered().get(n, "sdk") != "api"}
    # Ledger transfers need a ledger post; the name is checked against the source above.
    missing = worker_side - exposed(body) - {"walletflow_ledger_transfers"}
    assert missing == set(), body
    assert 'walletflow_webhook_deliveries{' in body and 'result="refused"' in body
