"""The crash sweep's machinery: a `python worker.py` per flow kind that is restarted each time an
armed fault point (faultpoints.py) kills it, the flow kinds (how each one is prepared, driven to
its end and what it must leave behind), and what a flow left behind, read from PostgreSQL and
the stand-in's call log."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from contracts.approvals import ApprovalDecision
from faultpoints import POINT_ENV, TRACE_ENV, read_trace
from tests.support import Tenant, eventually, set_rewards, topup

ROOT = Path(__file__).resolve().parent.parent
# Long enough for a flow whose every activity was killed mid-way to finish: each killed attempt
# waits out its start-to-close timeout (10 s ledger, 15 s gateway) before it is retried.
WITHIN = 300.0


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``python <args>`` in the repository, its output appended to ``log``."""
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env,
                                stdout=out, stderr=out)


class Chain:
    """One flow kind's worker on its own task queue. ``armed`` points are passed in
    WALLETFLOW_FAULT_POINT; each time the worker dies, the point that killed it (read from
    the trace) is disarmed and the worker restarted, until the kind's flows are done."""

    def __init__(self, name: str, env: dict[str, str], workdir: Path):
        self.name = name
        self.trace = workdir / f"{name}.trace"
        self.log = workdir / f"{name}.log"
        self.env = {**env, TRACE_ENV: str(self.trace)}
        self.armed: set[str] = set()
        self.fired: list[str] = []
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        env = dict(self.env)
        env.pop(POINT_ENV, None)
        if self.armed:
            env[POINT_ENV] = ",".join(sorted(self.armed))
        self.proc = spawn([str(ROOT / "worker.py")], env, self.log)

    async def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                await asyncio.to_thread(self.proc.wait, 15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                await asyncio.to_thread(self.proc.wait)

    async def supervise(self, done: asyncio.Event) -> None:
        """Restart the worker each time a fault point kills it, until ``done``."""
        stopper = asyncio.create_task(done.wait())
        try:
            while True:
                assert self.proc is not None
                died = asyncio.create_task(asyncio.to_thread(self.proc.wait))
                await asyncio.wait({died, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if not died.done():
                    died.cancel()
                    return
                pid = self.proc.pid
                fired = {line["fired"] for line in read_trace(self.trace)
                         if line["fired"] and line["pid"] == pid}
                assert died.result() == -signal.SIGKILL and fired, (
                    f"{self.name}: worker {pid} ended with {died.result()}; see {self.log}")
                self.armed -= fired
                self.fired += sorted(fired)
                await self.start()
        finally:
            stopper.cancel()
            await self.stop()

    def executed(self, flow_id: str) -> list[tuple[str, str]]:
        """(activity type, activity id) of every activity ``flow_id`` ran, in order."""
        seen: dict[str, str] = {}
        for line in read_trace(self.trace):
            if line["flow_id"] == flow_id and line["point"].startswith("before:"):
                seen.setdefault(line["activity_id"], line["point"].removeprefix("before:"))
        return [(kind, aid) for aid, kind in seen.items()]


@dataclass
class Ctx:
    """What a flow kind's driver needs: the API on the kind's queue, the stand-in, the
    database and Temporal."""

    http: httpx.AsyncClient
    stripe: httpx.AsyncClient
    sessions: async_sessionmaker[AsyncSession]
    temporal: Client

    async def first(self, route: str, flow_id: str) -> dict[str, Any]:
        """The first stand-in object (``payment_intents``, ``refunds``, ``payouts``) of a flow."""
        async def find() -> list[dict[str, Any]]:
            return (await self.stripe.get(f"/_standin/{route}", params={"flow_id": flow_id})
                    ).json()["data"]
        return (await eventually(find, lambda found: len(found) >= 1, within=WITHIN))[0]

    async def detail(self, t: Tenant, flow_id: str, name: str) -> str:
        """A detail of the flow's own status (the gateway object it waits for: what its client
        or operator acts on), once it has it; answers while no worker runs are retried."""
        async def status() -> dict[str, Any]:
            r = await self.http.get(f"/v1/flows/{flow_id}", headers=t.client)
            return dict(r.json()) if r.status_code == 200 else {}
        found = await eventually(status, lambda s: name in s.get("details", {}), within=WITHIN)
        return str(found["details"][name])

    async def result(self, flow_id: str) -> str:
        """The workflow's result: its final state."""
        handle = self.temporal.get_workflow_handle(flow_id)
        res = await asyncio.wait_for(handle.result(), WITHIN)
        return str(res["state"] if isinstance(res, dict) else res)


def started(r: Any) -> str:
    """A flow-starting answer: 201, or 202 while no worker answered (killed); its flow id."""
    assert r.status_code in (200, 201, 202), r.text
    return str(r.json()["flow_id"])


# -- the flow kinds ---------------------------------------------------------------------------


async def _fund(c: Ctx, t: Tenant, minor: int) -> None:
    from tests.test_orders import fund

    await fund(c.sessions, t, minor)


async def drive_topup(c: Ctx, t: Tenant) -> str:
    flow_id = started(await topup(c.http, t, "sweep-topup", amount="30.00", currency="EUR"))
    pi = await c.detail(t, flow_id, "payment_id")
    await c.stripe.post(f"/_standin/payment_intents/{pi}/succeed")
    return flow_id


async def drive_order(c: Ctx, t: Tenant) -> str:
    from tests.test_orders import pay

    flow_id = started(await pay(c.http, t, "sweep-order", order_id="sweep-order",
                                amount="50.00", currency="EUR", method="split",
                                wallet_amount="30.00"))
    pi = await c.detail(t, flow_id, "payment_id")
    await c.stripe.post(f"/_standin/payment_intents/{pi}/succeed")
    return flow_id


async def _paid_order(c: Ctx, t: Tenant, method: str) -> None:
    """The order a refund gives back part of: 100.00 from the wallet, or 80.00 by card; paid
    (its workflow's result: queries can time out while many flows replay at once)."""
    from tests.test_orders import pay

    if method == "wallet":
        await _fund(c, t, 10000)
    flow_id = started(await pay(c.http, t, "pay-sweep-paid", order_id="sweep-paid",
                                amount="100.00" if method == "wallet" else "80.00",
                                currency="EUR", method=method))
    if method == "card":
        pi = await c.first("payment_intents", flow_id)
        await c.stripe.post(f"/_standin/payment_intents/{pi['id']}/succeed")
    assert await c.result(flow_id) == "paid"


async def prepare_wallet_order(c: Ctx, t: Tenant) -> None:
    await _paid_order(c, t, "wallet")


async def prepare_card_order(c: Ctx, t: Tenant) -> None:
    await _paid_order(c, t, "card")


async def drive_refund_wallet(c: Ctx, t: Tenant) -> str:
    from tests.test_refunds import refund

    return started(await refund(c.http, t, "sweep-paid", "sweep-refund", "30.00"))


async def drive_refund_card(c: Ctx, t: Tenant) -> str:
    from tests.test_refunds import refund

    flow_id = started(await refund(c.http, t, "sweep-paid", "sweep-refund", "30.00",
                                   destination="original"))
    found = await c.detail(t, flow_id, "gateway_refund_id")
    await c.stripe.post(f"/_standin/refunds/{found}/succeed")
    return flow_id


async def prepare_campaign(c: Ctx, t: Tenant) -> None:
    from tests.test_donations import campaign

    await _fund(c, t, 5000)
    await campaign(c.http, t, "sweep-camp")


async def drive_donation(c: Ctx, t: Tenant) -> str:
    from tests.test_donations import donate

    return started(await donate(c.http, t, "sweep-camp", "sweep-donation", "25.50"))


async def prepare_withdrawal(c: Ctx, t: Tenant) -> None:
    from tests.test_withdrawals import onboard

    await _fund(c, t, 10000)
    await onboard(c.http, c.stripe, t, t.user_id)


async def drive_withdrawal(c: Ctx, t: Tenant) -> str:
    flow_id = started(await c.http.post("/v1/withdrawals", json={  # to the payout account
        "user_id": t.user_id, "amount": "25.00", "currency": "EUR", "method": "bank_transfer"},
        headers={**t.client, "Idempotency-Key": "sweep-withdrawal"}))

    async def state() -> str:  # the flow's own state: a decision before it waits is ignored
        r = await c.http.get(f"/v1/flows/{flow_id}", headers=t.client)
        return str(r.json()["state"]) if r.status_code == 200 else "unavailable"
    await eventually(state, lambda s: s == "awaiting_approval", within=WITHIN)
    # The decision as a signal (the Temporal UI's way): stored in the history even while no
    # worker runs; deduplicated on its id.
    await c.temporal.get_workflow_handle(flow_id).signal("decision", ApprovalDecision(
        admin="admin-alice", approve=True, decision_id="sweep-approve"))
    payout = await c.detail(t, flow_id, "payout_id")
    await c.stripe.post(f"/_standin/payouts/{payout}/paid")
    return flow_id


async def prepare_purchase(c: Ctx, t: Tenant) -> None:
    await set_rewards(c.sessions, t, return_window_seconds=0)


async def drive_purchase(c: Ctx, t: Tenant) -> str:
    return started(await c.http.post("/v1/purchases", json={
        "order_id": "sweep-purchase", "user_id": t.user_id, "amount": "100.00",
        "currency": "EUR"}, headers={**t.client, "Idempotency-Key": "sweep-purchase"}))


async def _nothing(c: Ctx, t: Tenant) -> None:
    return None


@dataclass(frozen=True)
class Kind:
    name: str
    drive: Callable[[Ctx, Tenant], Awaitable[str]]  # start it, do what the outside world does
    final: str  # the workflow's result
    wallet: int  # the user's EUR wallet, posted, at the end (minor units)
    creates: tuple[str, ...] = ()  # gateway objects it creates, one each
    prepare: Callable[[Ctx, Tenant], Awaitable[None]] = _nothing  # on a clean worker


KINDS = [
    Kind("topup", drive_topup, "completed", 3000, ("payment_intents.create",)),
    Kind("order_split", drive_order, "paid", 0, ("payment_intents.create",),
         lambda c, t: _fund(c, t, 3000)),
    Kind("refund_wallet", drive_refund_wallet, "refunded", 3000, (), prepare_wallet_order),
    Kind("refund_card", drive_refund_card, "refunded", 0, ("refunds.create",),
         prepare_card_order),
    Kind("donation", drive_donation, "completed", 2450, (), prepare_campaign),
    Kind("withdrawal", drive_withdrawal, "paid", 7500, ("transfers.create", "payouts.create"),
         prepare_withdrawal),
    Kind("purchase", drive_purchase, "available", 1000, (), prepare_purchase),
]


# -- what a flow left behind ------------------------------------------------------------------


@dataclass
class Effects:
    """A tenant's ledger and outbox, and a flow's real gateway calls, with the tenant's slug
    taken out of every key so that two tenants running the same story compare equal."""

    transfers: list[tuple[str, ...]]
    accounts: list[tuple[str, ...]]
    outbox: list[tuple[str, ...]]
    creates: dict[str, int]
    objects: dict[str, int] = field(default_factory=dict)
    wallet: int = 0


async def effects(c: Ctx, t: Tenant, flow_id: str) -> Effects:
    def norm(value: object) -> str:
        return str(value).replace(t.slug, "T")

    async with c.sessions() as s:
        def rows(sql: str) -> Any:
            return s.execute(text(sql), {"t": t.id})
        transfers = sorted(tuple(map(norm, r)) for r in await rows(
            "SELECT idempotency_key, kind, amount, currency, state FROM transfers "
            "WHERE tenant_id = :t"))
        # System accounts are sharded (`stripe#3`): compared summed over their shards.
        accounts = sorted(tuple(map(norm, r)) for r in await rows(
            "SELECT kind, split_part(owner_id, '#', 1), currency, sum(posted), sum(pending_in), "
            "sum(pending_out) FROM accounts WHERE tenant_id = :t GROUP BY 1, 2, 3"))
        outbox = sorted(tuple(map(norm, r)) for r in await rows(
            "SELECT type, event_key FROM outbox_events WHERE tenant_id = :t"))
    calls = (await c.stripe.get("/_standin/calls", params={"flow_id": flow_id})).json()["data"]
    creates = Counter(call["operation"] for call in calls if call["operation"].endswith(".create")
                      and not call["fault"] and not call["replayed"])
    objects = {route: len((await c.stripe.get(f"/_standin/{route}", params={
        "flow_id": flow_id})).json()["data"]) for route in ("payment_intents", "refunds",
                                                              "payouts")}
    wallet = next((int(a[3]) for a in accounts if a[:3] == ("user_wallet", t.user_id, "EUR")), 0)
    return Effects(transfers, accounts, outbox, dict(creates), objects, wallet)
