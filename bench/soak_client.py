"""One soak client: its own user, a random mix of top-ups (some declined), wallet and split
orders (some card payments declined), concurrent refunds of one order, donations and
withdrawals decided by an admin (approved or rejected), each driven to its end, and every
answer checked against and recorded in the client's book (the oracle)."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from bench.soak_http import Api, OrderBook, UserBook, fmt

FINAL = {"completed", "failed", "expired", "rejected", "refused", "paid", "refunded",
         "payout_failed", "archived"}
MIX = [("topup", 26), ("order_wallet", 18), ("order_split", 14), ("refunds", 16),
       ("donation", 12), ("withdrawal", 14)]


def final(body: dict[str, Any]) -> bool:
    return body.get("state") in FINAL


class Client:
    def __init__(self, n: int, api: Api, keys: dict[str, str], campaign: str, seed: int):
        self.n, self.api, self.rec = n, api, api.rec
        self.client = {"Authorization": f"Bearer {keys['client_key']}"}
        self.admin = {"Authorization": f"Bearer {keys['admin_key']}"}
        self.campaign = campaign
        self.book = UserBook(f"soak-user-{n}")
        self.rng = random.Random(seed * 1000 + n)
        self.seq = 0
        self.payout_account: bool = False

    def key(self, what: str) -> str:
        self.seq += 1
        return f"c{self.n}-{what}-{self.seq}"

    async def post(self, kind: str, path: str, body: dict[str, Any],
                   key: str | None = None, admin: bool = False) -> Any:
        headers = dict(self.admin if admin else self.client)
        if key is not None:
            headers["Idempotency-Key"] = key
        return await self.api.call(kind, "POST", path, json=body, headers=headers)

    def expect(self, ok: bool, what: str, r: Any) -> bool:
        if not ok:
            self.rec.wrong(f"client {self.n}: {what}: {r.status_code} {r.text[:300]}")
        return ok

    async def flow_end(self, flow_id: str, kind: str) -> str:
        body = await self.api.wait(f"/v1/flows/{flow_id}", self.client, final)
        state = str(body["state"]) if body else "stuck"
        self.book.flows[flow_id] = (kind, state)
        self.rec.finals[kind][state] += 1
        return state

    async def payment_id(self, answer: dict[str, Any], flow_id: str) -> str | None:
        if answer.get("payment"):
            return str(answer["payment"]["payment_id"])
        body = await self.api.wait(f"/v1/flows/{flow_id}", self.client,
                                   lambda b: "payment_id" in (b.get("details") or {})
                                   or final(b))
        return str(body["details"]["payment_id"]) if body and "payment_id" in (
            body.get("details") or {}) else None

    async def pay(self, pi: str | None, decline: bool) -> None:
        if pi is not None:
            r = await self.api.call("stripe_pay", "POST", f"/_standin/payment_intents/{pi}/"
                                    f"{'fail' if decline else 'succeed'}", standin=True)
            self.expect(r.status_code == 200, f"stand-in pay {pi}", r)

    async def refused(self, r: Any, kind: str, what: str) -> None:
        """An amount above the balance: 402 at once, or (the flow's answer came too late for
        the request) 202 and the flow ends refused, having moved nothing."""
        if r.status_code == 202:
            state = await self.flow_end(r.json()["flow_id"], kind)
            self.expect(state in ("failed", "refused"), f"{what}: ended {state}", r)
        else:
            self.expect(r.status_code == 402, what, r)

    # -- the operations -----------------------------------------------------------------------

    async def register(self) -> None:
        r = await self.post("user", "/v1/users", {"user_id": self.book.user_id,
                                                  "email": f"{self.book.user_id}@example.com"})
        self.expect(r.status_code in (200, 201), "register", r)

    async def topup(self) -> None:
        amount = self.rng.randrange(2000, 15000)
        r = await self.post("topup", "/v1/topups", {"user_id": self.book.user_id,
                                                    "amount": fmt(amount), "currency": "EUR"},
                            self.key("topup"))
        if not self.expect(r.status_code in (201, 202), "top-up", r):
            return
        flow_id = r.json()["flow_id"]
        decline = self.rng.random() < 0.12
        await self.pay(await self.payment_id(r.json(), flow_id), decline)
        state = await self.flow_end(flow_id, "topup")
        if state == "completed":
            self.book.eur += amount
        self.expect(state == ("failed" if decline else "completed"), f"top-up {flow_id} "
                    f"ended {state}", r)

    async def order_wallet(self) -> None:
        over = self.rng.random() < 0.08 or self.book.eur < 100
        amount = (self.book.eur + self.rng.randrange(1, 5000) if over
                  else self.rng.randrange(100, max(101, self.book.eur // 3)))
        order_id = self.key("order")
        r = await self.post("order_wallet", "/v1/orders", {
            "order_id": order_id, "user_id": self.book.user_id, "amount": fmt(amount),
            "currency": "EUR", "method": "wallet"}, order_id)
        if over:
            return await self.refused(r, "order", f"wallet order over the balance "
                                      f"({fmt(amount)} > {fmt(self.book.eur)})")
        if not self.expect(r.status_code in (201, 202), "wallet order", r):
            return
        flow_id = r.json()["flow_id"]
        state = r.json()["state"] if r.status_code == 201 else await self.flow_end(
            flow_id, "order")
        if r.status_code == 201:
            self.book.flows[flow_id] = ("order", state)
            self.rec.finals["order"][state] += 1
        if self.expect(state == "paid", f"wallet order {order_id} is {state}", r):
            self.book.eur -= amount
            self.book.orders[order_id] = OrderBook(order_id, flow_id, amount, amount, "paid")

    async def order_split(self) -> None:
        if self.book.eur < 200:
            return await self.topup()
        wallet = self.rng.randrange(100, max(101, self.book.eur // 3))
        amount = wallet + self.rng.randrange(500, 8000)
        order_id = self.key("split")
        r = await self.post("order_split", "/v1/orders", {
            "order_id": order_id, "user_id": self.book.user_id, "amount": fmt(amount),
            "currency": "EUR", "method": "split", "wallet_amount": fmt(wallet)}, order_id)
        if not self.expect(r.status_code in (201, 202), "split order", r):
            return None
        flow_id = r.json()["flow_id"]
        decline = self.rng.random() < 0.12
        await self.pay(await self.payment_id(r.json(), flow_id), decline)
        state = await self.flow_end(flow_id, "order")
        if self.expect(state == ("failed" if decline else "paid"),
                       f"split order {order_id} ended {state}", r) and state == "paid":
            self.book.eur -= wallet
            self.book.orders[order_id] = OrderBook(order_id, flow_id, amount, wallet, "paid")
        return None

    async def refunds(self) -> None:
        """2-3 refunds of one order at once (to the wallet); together they may ask more than
        is left: at most what is left may be granted, the rest refused 422."""
        open_orders = [o for o in self.book.orders.values() if o.refunded < o.amount]
        if not open_orders:
            return await self.order_wallet()
        order = self.rng.choice(open_orders)
        left = order.amount - order.refunded
        amounts = [self.rng.randrange(1, max(2, left * 2 // 3)) for _ in
                   range(self.rng.choice((2, 3)))]
        answers = await asyncio.gather(*(self.refund_one(order, a) for a in amounts))
        granted = sum(a for a, ok in zip(amounts, answers, strict=True) if ok)
        if granted > left or (sum(amounts) <= left and granted != sum(amounts)) or (
                min(amounts) <= left and granted == 0):
            self.rec.wrong(f"client {self.n}: refunds {amounts} of {order.order_id} with "
                           f"{fmt(left)} left: granted {fmt(granted)}")
        order.refunded += granted
        self.book.eur += granted
        return None

    async def refund_one(self, order: OrderBook, amount: int) -> bool:
        key = self.key("refund")
        r = await self.post("refund", f"/v1/orders/{order.order_id}/refunds", {
            "amount": fmt(amount), "currency": "EUR", "destination": "wallet"}, key)
        if r.status_code == 422 and r.json().get("code") == "refund_exceeds_paid":
            return False
        if not self.expect(r.status_code in (201, 202), "refund", r):
            return False
        flow_id = r.json()["flow_id"]
        state = "refunded" if r.status_code == 201 else await self.flow_end(flow_id, "refund")
        if r.status_code == 201:
            self.book.flows[flow_id] = ("refund", state)
            self.rec.finals["refund"][state] += 1
        return state == "refunded"

    async def donation(self) -> None:
        over = self.rng.random() < 0.08 or self.book.eur < 100
        amount = (self.book.eur + self.rng.randrange(1, 3000) if over
                  else self.rng.randrange(100, max(101, self.book.eur // 4)))
        r = await self.post("donation", f"/v1/campaigns/{self.campaign}/donations", {
            "user_id": self.book.user_id, "amount": fmt(amount), "currency": "EUR"},
            self.key("donation"))
        if over:
            return await self.refused(r, "donation", "donation over the balance")
        if not self.expect(r.status_code in (201, 202), "donation", r):
            return
        flow_id = r.json()["flow_id"]
        state = await self.flow_end(flow_id, "donation")
        if self.expect(state == "completed", f"donation {flow_id} ended {state}", r):
            self.book.eur -= amount
            self.book.donated += amount
            self.book.donations += 1
            self.book.pts += amount // 100  # 1 point per whole unit (the default)
            told = r.json().get("points_earned")
            self.expect(told is None or int(told) == amount // 100, "points earned", r)

    async def withdrawal(self) -> None:
        if self.book.eur < 200:
            return await self.topup()
        amount = self.rng.randrange(100, self.book.eur // 2)
        r = await self.post("withdrawal", "/v1/withdrawals", await self.withdrawal_body(amount),
                            self.key("withdrawal"))
        if not self.expect(r.status_code in (201, 202), "withdrawal", r):
            return None
        flow_id = r.json()["flow_id"]
        approve = self.rng.random() < 0.7
        await self.decide(flow_id, approve)
        state = await self.flow_end(flow_id, "withdrawal")
        if self.expect(state == ("paid" if approve else "rejected"),
                       f"withdrawal {flow_id} ended {state}", r) and state == "paid":
            self.book.eur -= amount
        return None

    async def withdrawal_body(self, amount: int) -> dict[str, Any]:
        """Today's request: with a payee onboarding route (a Stripe Connect payout account),
        the user is onboarded first (once) and paid by ``bank_transfer`` to that account."""
        body: dict[str, Any] = {"user_id": self.book.user_id, "amount": fmt(amount),
                                "currency": "EUR"}
        if not self.api.payout_route:
            return body | {"method": "paypal", "destination": f"{self.book.user_id}@example.com"}
        if not self.payout_account:
            await self.onboard(self.api.payout_route.format(user_id=self.book.user_id))
        return body | {"method": "bank_transfer"}

    async def onboard(self, path: str) -> None:
        """The payout account, its onboarding completed at the stand-in (as the user would on
        Stripe's page), until the API says payouts are enabled (``account.updated``)."""
        r = await self.post("payout_account", path, {
            "return_url": "http://127.0.0.1/soak/return",
            "refresh_url": "http://127.0.0.1/soak/refresh"})
        if not self.expect(r.status_code in (200, 201), "payout account", r):
            return
        for acct in _accounts(r.json()):
            await self.api.call("stripe_onboard", "POST", f"/_standin/accounts/{acct}/"
                                "complete_onboarding", standin=True)
        self.payout_account = bool(await self.api.wait(
            path, self.client, lambda b: bool(b.get("payouts_enabled")), within=120))

    async def decide(self, flow_id: str, approve: bool) -> None:
        """An admin's decision through the API, once the flow waits for it; a decision that
        was not confirmed (a worker was killed) is sent again while the flow still waits."""
        path = f"/v1/withdrawals/{flow_id}"
        deadline, last = time.monotonic() + 300, "none"
        while time.monotonic() < deadline:
            body = await self.api.wait(path, self.admin,
                                       lambda b: b.get("state") != "requested")
            if body is None or body.get("state") != "awaiting_approval":
                return
            r = await self.post("decision", f"{path}/{'approve' if approve else 'reject'}",
                                {"reason": "soak"}, admin=True)
            if r.status_code == 200:
                return
            last = f"{r.status_code} {r.text[:300]}"
            await asyncio.sleep(0.5)
        self.rec.wrong(f"client {self.n}: no decision on {flow_id} was taken; last answer "
                       f"{last}")

    async def run(self, until: float) -> None:
        await self.register()
        await self.topup()
        kinds, weights = zip(*MIX, strict=True)
        while time.monotonic() < until:
            op = self.rng.choices(kinds, weights)[0]
            try:
                await getattr(self, op)()
            except Exception as e:  # noqa: BLE001 - one failed step is reported, the rest go on
                self.rec.wrong(f"client {self.n}: {op} raised {type(e).__name__}: {e}")


def _accounts(value: Any) -> set[str]:
    """The connected accounts (``acct_…``) an answer names, wherever it names them."""
    if isinstance(value, str):
        return {value} if value.startswith("acct_") else set()
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return set().union(*(_accounts(v) for v in value)) if value else set()
    return set()
