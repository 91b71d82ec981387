"""(b) A top-up end to end: `POST /v1/topups` → the stand-in's `succeed` → signed webhook →
the workflow's result, then `GET /v1/flows/{id}` must say `completed`; sequential."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import httpx

from bench.common import BenchConfig, BenchError, Results, log
from bench.stack import Stack
from bench.stats import fmt_stats, latency_stats
from tests.support import Tenant, create_tenant

TOPUP_AMOUNT = "12.34"


async def post_topup(http: httpx.AsyncClient, tenant: Tenant, key: str,
                     amount: str = TOPUP_AMOUNT) -> httpx.Response:
    return await http.post("/v1/topups", json={"user_id": tenant.user_id, "amount": amount,
                                               "currency": "EUR"},
                           headers={**tenant.client, "Idempotency-Key": key})


PHASES: dict[str, list[float]] = {"post": [], "paid": []}


async def topup_end_to_end(st: Stack, tenant: Tenant, key: str, within: float = 30.0) -> float:
    started = time.perf_counter()
    r = await post_topup(st.http, tenant, key)
    PHASES["post"].append(time.perf_counter() - started)
    if r.status_code != 201:
        raise BenchError(f"POST /v1/topups answered {r.status_code}: {r.text[:300]}")
    body = r.json()
    paid = await st.ctl.post(f"/_standin/payment_intents/{body['payment']['payment_id']}/succeed")
    paid_at = time.perf_counter()
    if paid.status_code != 200:
        raise BenchError(f"stand-in succeed answered {paid.status_code}: {paid.text[:300]}")
    # Waited for like the floor's workflows: the workflow's result (a long poll), then the
    # API is asked to confirm.
    async with asyncio.timeout(within):
        await st.temporal.client.get_workflow_handle(body["flow_id"]).result()
    done = time.perf_counter()
    PHASES["paid"].append(done - paid_at)
    s = await st.http.get(f"/v1/flows/{body['flow_id']}", headers=tenant.client)
    if s.status_code != 200 or s.json()["state"] != "completed":
        raise BenchError(f"top-up {body['flow_id']} ended {s.json().get('state')}: {s.text[:300]}")
    return done - started


async def part_topup(st: Stack, cfg: BenchConfig, res: Results) -> None:
    tenant = await create_tenant(st.sessions, "bench-b")
    for i in range(cfg.warmup):
        await topup_end_to_end(st, tenant, f"warm-{i}")
    lat = [await topup_end_to_end(st, tenant, f"e2e-{i}") for i in range(cfg.topup_n)]
    s = latency_stats(lat)
    wallet = (await st.http.get(f"/v1/wallets/{tenant.user_id}", headers=tenant.client)).json()
    posted = next((b["posted"] for b in wallet["balances"]
                   if (b["account"], b["currency"]) == ("user_wallet", "EUR")), None)
    expected = str(Decimal(TOPUP_AMOUNT) * (cfg.topup_n + cfg.warmup))
    if posted != expected:
        raise BenchError(f"wallet holds {posted} EUR after the top-ups, expected {expected}")
    log(f"(b) top-up end to end (POST → succeed → webhook → completed): {fmt_stats(s)}; "
        f"wallet {posted} EUR as expected")
    phases = {k: latency_stats(v[-cfg.topup_n:]) for k, v in PHASES.items()}
    log(f"(b) of which POST /v1/topups → 201 with the PaymentIntent: {fmt_stats(phases['post'])}")
    log(f"(b) of which paid → workflow completed (signed webhook, signal, credit): "
        f"{fmt_stats(phases['paid'])}")
    floor = res.value("floor_seq_mean_ms")
    ratio = floor / s["mean_ms"] if floor else None
    if ratio is not None:
        log(f"(b) floor mean / top-up mean = {ratio:.2f} (target ≥ 1.0)")
    res.details["topup"] = {**s, "wallet_posted": posted, "phases": phases}
    res.add("topup_mean_ms", "(b) top-up end-to-end mean", s["mean_ms"], "ms")
    res.add("topup_p50_ms", "(b) top-up end-to-end p50", s["p50_ms"], "ms")
    res.add("topup_p99_ms", "(b) top-up end-to-end p99", s["p99_ms"], "ms")
    res.add("ratio_floor_over_topup", "(b) floor mean / top-up mean", ratio, "", (">=", 1.0))
