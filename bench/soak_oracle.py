"""The soak's end checks, once the killer stopped and every flow ended: what each client was
told (its book) against the API's views (wallets, orders, donations, each flow's state), the
ledger's sums per currency and its user accounts, the flows Temporal still runs, and the two
operator commands, `walletflow ledger check` and `walletflow reconcile`."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import text
from temporalio.client import Client as TemporalClient

from bench.common import ROOT
from bench.soak_client import Client
from bench.soak_http import fmt, minor
from db.engine import create_engine

# Flows that run for as long as their subject lives: a campaign until its end date, the
# janitor's scheduled runs.
LONG_LIVED = {"CampaignWorkflow", "JanitorWorkflow"}


@dataclass
class EndState:
    sums: dict[str, dict[str, int]] = field(default_factory=dict)  # currency → posted, pending
    negative_users: int = 0
    running: list[str] = field(default_factory=list)
    view_mismatches: list[str] = field(default_factory=list)
    ledger_check: tuple[int, str] = (0, "")
    drifts: list[str] = field(default_factory=list)
    reconcile_rc: int = 0


async def check_wallet(c: Client, wrong: list[str]) -> None:
    r = await c.api.call("check", "GET", f"/v1/wallets/{c.book.user_id}", headers=c.client)
    seen = {(b["account"], b["currency"]): b for b in r.json()["balances"]}
    for (account, cur), want in ((("user_wallet", "EUR"), c.book.eur),
                                 (("user_points", "PTS"), c.book.pts)):
        b = seen.get((account, cur), {"posted": "0", "pending_in": "0", "pending_out": "0"})
        got = int(b["posted"]) if cur == "PTS" else minor(b["posted"])
        if got != want or minor(b["pending_in"]) or minor(b["pending_out"]):
            wrong.append(f"{c.book.user_id} {account} {cur}: the wallet says {b}, the client "
                         f"was told {want} (minor units)")


async def check_orders(c: Client, wrong: list[str]) -> None:
    for o in c.book.orders.values():
        r = await c.api.call("check", "GET", f"/v1/orders/{o.order_id}", headers=c.client)
        v = r.json()
        status = "paid" if o.refunded == 0 else (
            "refunded" if o.refunded == o.amount else "partially_refunded")
        if (minor(v["refunded"]) != o.refunded or minor(v["amount"]) != o.amount
                or minor(v["parts"]["wallet"]) != o.wallet or v["status"] != status):
            wrong.append(f"order {o.order_id}: the view says {v['status']} refunded "
                         f"{v['refunded']} of {v['amount']}, the client was told {status}, "
                         f"{fmt(o.refunded)} of {fmt(o.amount)}")


async def check_donations(c: Client, wrong: list[str]) -> None:
    total, count, cursor = 0, 0, None
    while True:
        params = {"limit": 200, **({"cursor": cursor} if cursor else {})}
        r = await c.api.call("check", "GET", f"/v1/users/{c.book.user_id}/donations",
                             headers=c.client, params=params)
        body = r.json()
        total += sum(minor(d["amount"]) for d in body["data"])
        count += len(body["data"])
        cursor = body["next_cursor"]
        if not cursor:
            break
    if (total, count) != (c.book.donated, c.book.donations):
        wrong.append(f"{c.book.user_id} donations: the list says {count} for {fmt(total)}, "
                     f"the client was told {c.book.donations} for {fmt(c.book.donated)}")


async def check_flows(c: Client, wrong: list[str]) -> None:
    for flow_id, (kind, state) in c.book.flows.items():
        r = await c.api.call("check", "GET", f"/v1/flows/{flow_id}", headers=c.client)
        now = r.json().get("state") if r.status_code == 200 else f"HTTP {r.status_code}"
        if now != state:
            wrong.append(f"{kind} {flow_id}: now {now}, the client was told {state}")


async def check_views(clients: list[Client]) -> list[str]:
    wrong: list[str] = []

    async def one(c: Client) -> None:
        for check in (check_wallet, check_orders, check_donations, check_flows):
            await check(c, wrong)
    await asyncio.gather(*(one(c) for c in clients))
    return wrong


async def ledger_figures(db_url: str) -> tuple[dict[str, dict[str, int]], int]:
    """Σ posted / pending in / pending out per currency over every account; user accounts
    below zero (posted, or available)."""
    engine = create_engine(db_url, 1)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(text(
                "SELECT currency, sum(posted), sum(pending_in), sum(pending_out) "
                "FROM accounts GROUP BY currency ORDER BY currency"))).all()
            negative = (await conn.execute(text(
                "SELECT count(*) FROM accounts WHERE kind IN ('user_wallet', 'user_points') "
                "AND (posted < 0 OR posted - pending_out < 0)"))).scalar_one()
    finally:
        await engine.dispose()
    sums = {cur: {"posted": int(p), "pending_in": int(i), "pending_out": int(o)}
            for cur, p, i, o in rows}
    return sums, int(negative)


async def running_flows(client: TemporalClient) -> list[str]:
    """Workflows still running, but for the long-lived ones."""
    return [f"{w.workflow_type} {w.id}" async for w in client.list_workflows(
        "ExecutionStatus='Running'") if w.workflow_type not in LONG_LIVED]


async def walletflow(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "walletflow"), *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def end_state(clients: list[Client], db_url: str, temporal: TemporalClient,
                    env: dict[str, str]) -> EndState:
    end = EndState()
    end.view_mismatches = await check_views(clients)
    end.sums, end.negative_users = await ledger_figures(db_url)
    end.running = await running_flows(temporal)
    rc, out, err = await walletflow(env, "ledger", "check")
    end.ledger_check = (rc, (out + err).strip()[-2000:])
    end.reconcile_rc, out, _ = await walletflow(env, "reconcile", "--since", "1d")
    end.drifts = [line for line in out.splitlines() if line.strip()]
    return end


def failures(end: EndState, rec: Any, died: list[str]) -> list[str]:
    """Every check that failed, in words; empty when the soak passed."""
    out = [f"Σ {cur} {k} = {v}" for cur, s in end.sums.items()
           for k, v in (("posted", s["posted"]), ("pending_in - pending_out",
                                                  s["pending_in"] - s["pending_out"])) if v]
    out += [f"{end.negative_users} user accounts below zero"] if end.negative_users else []
    out += [f"still running: {r}" for r in end.running[:20]]
    out += [f"stuck (client): {s}" for s in rec.stuck[:20]]
    out += [f"answer: {m}" for m in rec.mismatches[:30]]
    out += [f"view: {m}" for m in end.view_mismatches[:30]]
    if end.ledger_check[0]:
        out.append(f"walletflow ledger check exit {end.ledger_check[0]}: {end.ledger_check[1]}")
    if end.reconcile_rc or end.drifts:
        out += [f"reconcile drift: {d}" for d in end.drifts[:20]] or [
            f"walletflow reconcile exit {end.reconcile_rc}"]
    out += [f"process died: {d}" for d in died]
    return out
