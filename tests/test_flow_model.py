"""The flows against their model (tests/flow_model.py): a Hypothesis state machine drives the
REAL stack through HTTP — top-ups paid or declined at the Stripe stand-in, orders paid from the
wallet, by card or split (declined too), refunds (partial, to the wallet or the card, above
what is left, replayed on their Idempotency-Key, several at once), refunds above the tenant's
approval threshold approved or rejected, purchases whose cashback is pending or available,
cancelled, reduced or clawed back by the order's refunds, and webhooks delivered twice or again
later. After every step each wallet, order, purchase and system account shows what the model
says, the views agree with sums read straight from the transfers, `walletflow ledger check`
adds no violation, and the tenant's outbox holds exactly the events the model expects, each
with the amount it announces, in causal order.

Withdrawals go to the user's payout account, onboarded once per example; failed payouts are
left out (their path is being reworked). Each example's ``setup`` reaches the important paths
itself: with swarm testing a few examples miss whole rules.

RuleBasedStateMachine is synchronous and the session's API and worker run on pytest-asyncio's
loop: the machine runs in a thread with its own loop, HTTP clients and engine, while the
session loop keeps serving. Each example runs in a fresh tenant.
``WALLETFLOW_PROOF=long`` runs many more examples and steps (docs/testing.md)."""

from __future__ import annotations

import asyncio
import copy
import itertools
import os
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from contracts.money import format_amount
from db.engine import create_engine, session_factory
from db.ledger import LedgerRepository
from tests.flow_model import CUR, Expected, Model
from tests.support import Tenant, create_tenant
from tests.test_withdrawals import onboard

T = TypeVar("T")
LONG = os.environ.get("WALLETFLOW_PROOF") == "long"
EXAMPLES = int(os.environ.get("WALLETFLOW_PROOF_EXAMPLES", 100 if LONG else 4))
STEPS = int(os.environ.get("WALLETFLOW_PROOF_STEPS", 20 if LONG else 7))
WITHIN = 60.0  # generous: a busy 2-core machine
USER = "user-1"

_LEDGER = text(  # every account's balances summed straight from the transfers
    "SELECT a.kind, a.currency, "
    "sum(CASE WHEN t.state = 'posted' THEN CASE WHEN t.credit_account_id = a.id "
    "THEN t.amount ELSE -t.amount END ELSE 0 END), "
    "sum(CASE WHEN t.state = 'pending' AND t.credit_account_id = a.id THEN t.amount ELSE 0 END), "
    "sum(CASE WHEN t.state = 'pending' AND t.debit_account_id = a.id THEN t.amount ELSE 0 END) "
    "FROM accounts a JOIN transfers t ON t.tenant_id = a.tenant_id "
    "AND a.id IN (t.debit_account_id, t.credit_account_id) "
    "WHERE a.tenant_id = :t GROUP BY a.kind, a.currency")
_EVENTS = text("SELECT id, event_key, type, payload FROM outbox_events WHERE tenant_id = :t "
               "ORDER BY id")


def fmt(v: int, cur: str = CUR) -> str:
    return format_amount(v, cur)


@dataclass
class Run:
    """What every example shares: the loop, the clients, the engine's sessions, the figures."""

    loop: asyncio.AbstractEventLoop
    sessions: async_sessionmaker[AsyncSession]
    api: httpx.AsyncClient
    ctl: httpx.AsyncClient
    examples: int = 0
    steps: dict[str, int] = field(default_factory=dict)
    answers: dict[str, int] = field(default_factory=dict)

    def wait(self, work: Awaitable[T]) -> T:
        return self.loop.run_until_complete(work)

    def got(self, what: str) -> None:
        self.answers[what] = self.answers.get(what, 0) + 1

    async def violations(self) -> list[str]:
        async with self.sessions() as s:
            found = await LedgerRepository(s).check_invariants()
        return [problem.partition(", e.g.")[0] for problem in found]


class FlowMachine(RuleBasedStateMachine):
    run: Run  # set on the subclass the test builds

    def __init__(self) -> None:
        super().__init__()
        self.run.examples += 1
        self.tenant: Tenant = self.run.wait(create_tenant(self.run.sessions, "flow"))
        self.model = Model()
        self.counter = 0
        self.gateway_flows: list[str] = []  # flows with Stripe events (to deliver again)
        self.card_flows: dict[str, str] = {}  # order → its payment's flow (card or split)
        self.candidates: list[Model] = []  # the serial orders a concurrent batch left open
        self.before = self.run.wait(self.run.violations())

    # -- talking to the stack --------------------------------------------------------------------

    def key(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{self.counter}"

    async def post(self, path: str, body: dict[str, Any], key: str | None = None,
                   admin: bool = False) -> httpx.Response:
        headers = dict(self.tenant.admin if admin else self.tenant.client)
        if key:
            headers["Idempotency-Key"] = key
        for _ in range(100):  # a concurrent duplicate of a key is told to retry
            r = await self.run.api.post(path, json=body, headers=headers)
            if r.status_code != 409 or r.json().get("code") != "idempotency_in_progress":
                return r
            await asyncio.sleep(0.2)
        return r

    async def get(self, path: str) -> dict[str, Any]:
        r = await self.run.api.get(path, headers=self.tenant.client)
        assert r.status_code == 200, (path, r.text)
        return r.json()

    def poll(self, path: str, done: Any, within: float = WITHIN) -> dict[str, Any]:
        async def go() -> dict[str, Any]:
            deadline = time.monotonic() + within
            while True:
                r = await self.run.api.get(path, headers=self.tenant.client)
                body = r.json() if r.status_code == 200 else {"http": r.status_code}
                if r.status_code == 200 and done(body):
                    return body
                assert time.monotonic() < deadline, f"{path} never got there: {body}"
                await asyncio.sleep(0.1)
        return self.run.wait(go())

    def gateway(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        r = self.run.wait(self.run.ctl.post(path, json=body or {}))
        assert r.status_code < 300, (path, r.text)
        return r.json() if r.content else {}

    def pay_card(self, flow_id: str, payment_id: str, paid: bool, twice: bool) -> None:
        """The customer pays (or the card is declined); the webhook comes twice if asked."""
        if twice:
            self.gateway("/_standin/faults", {"operation": "webhook", "mode": "duplicate",
                                               "copies": 2, "match": {"flow_id": flow_id}})
        self.gateway(f"/_standin/payment_intents/{payment_id}/{'succeed' if paid else 'fail'}")
        self.gateway_flows.append(flow_id)

    async def pay_early(self, flow_id: str, paid: bool) -> None:
        deadline = time.monotonic() + WITHIN
        while True:
            found = (await self.run.ctl.get("/_standin/payment_intents",
                                            params={"flow_id": flow_id})).json()["data"]
            if found:
                r = await self.run.ctl.post(f"/_standin/payment_intents/{found[0]['id']}/"
                                            f"{'succeed' if paid else 'fail'}")
                assert r.status_code < 300, r.text
                self.gateway_flows.append(flow_id)
                return
            assert time.monotonic() < deadline, f"no PaymentIntent for {flow_id}"
            await asyncio.sleep(0.02)

    def count(self, name: str) -> None:
        self.run.steps[name] = self.run.steps.get(name, 0) + 1

    def pick(self, data: st.DataObject, keys: list[str]) -> str:
        return keys[data.draw(st.integers(0, 255), "index") % len(keys)]

    # -- the tenant ------------------------------------------------------------------------------

    @initialize(data=st.data(), threshold=st.sampled_from([3000, 8000, None, 3000]),
                window=st.sampled_from([0, 3600]))
    def setup(self, data: st.DataObject, threshold: int | None, window: int) -> None:
        """Every example reaches the paths a few random steps may miss (the rules are
        chosen by swarm testing: in 4 examples some never run): a top-up perhaps paid before
        its answer is read, an order paid by card or split (what refunds act on), one
        declined, two refunds above the threshold (one approved — its card part refunded at
        the stand-in or not —, one rejected), three withdrawals (paid out, rejected, refused
        for insufficient funds) and refunds of the order at once."""
        self.configure(threshold, window, data.draw(st.booleans(), "setup early top-up"))
        self.count("setup onboard")
        self.run.wait(onboard(self.run.api, self.run.ctl, self.tenant, USER))
        method = data.draw(st.sampled_from(["card", "split"]), "setup order method")
        self.order(method, data.draw(st.integers(10_000, 15_000), "setup order amount"),
                   data.draw(st.integers(1, 99), "setup share"), True,
                   data.draw(st.booleans(), "setup twice"),
                   data.draw(st.booleans(), "setup report"), False, data)
        [order_id] = self.model.orders
        self.order(data.draw(st.sampled_from(["split", "card"]), "setup declined method"),
                   data.draw(st.integers(200, 5_000), "setup declined amount"),
                   data.draw(st.integers(1, 99), "setup declined share"), False, False, False,
                   False, data)  # a card declined: the order fails, its wallet hold voided
        if threshold is not None:
            self.approval_pair(data, order_id, threshold)
        self.withdrawal_trio(data)
        self.concurrent_refunds(data, data.draw(st.integers(2, 3), "setup n"),
                                data.draw(st.booleans(), "setup twice"))  # last: see linearize

    def approval_pair(self, data: st.DataObject, order_id: str, threshold: int) -> None:
        """Two refunds of the order that need an admin; one approved, the other rejected."""
        first = threshold + data.draw(st.integers(0, 500), "setup first refund over")
        left = self.model.orders[order_id].amount - first
        second = data.draw(st.integers(max(1, threshold - first), max(1, min(left, 3000))),
                           "setup second refund")
        approve_first = data.draw(st.booleans(), "setup approve the first")
        rejected = data.draw(st.sampled_from(["wallet", "original"]), "setup destination")
        flows = [self.request_refund(order_id, amount, "original" if approve else rejected,
                                     False)
                 for amount, approve in ((first, approve_first), (second, not approve_first))]
        for flow_id, approve in zip(flows, (approve_first, not approve_first), strict=True):
            if self.model.refunds[flow_id].state == "awaiting_approval":
                self.decide_refund(flow_id, approve, data.draw(st.booleans(), "setup gateway ok"),
                                   data.draw(st.booleans(), "setup replay"))

    def withdrawal_trio(self, data: st.DataObject) -> None:
        """Withdrawals: one paid out, one rejected (requested before either is decided), one
        above the available balance."""
        amounts = [data.draw(st.integers(1, 3000), "setup withdrawal") for _ in range(2)]
        flows = [self.withdraw_request(a) for a in amounts]
        pay_first = data.draw(st.booleans(), "setup pay the first")
        for flow_id, approve in zip(flows, (pay_first, not pay_first), strict=True):
            if flow_id is not None:
                self.decide_withdrawal_of(flow_id, approve)
        self.withdraw_request(self.model.available + data.draw(st.integers(1, 500), "over"))

    def configure(self, threshold: int | None, window: int, early: bool) -> None:
        """The example's refund approval threshold and return window (no tier bonus)."""
        self.model.threshold, self.model.window = threshold, window
        r = self.run.wait(self.run.api.put("/v1/settings/rewards", headers=self.tenant.admin,
                                           json={"cashback_rate": "0.10",
                                                 "return_window_seconds": window,
                                                 "tier_bonus": dict.fromkeys(
                                                     ("bronze", "silver", "gold", "platinum"),
                                                     "0")}))
        assert r.status_code == 200, r.text
        limit = {"EUR": fmt(threshold)} if threshold is not None else None
        r = self.run.wait(self.run.api.put("/v1/settings/refunds", headers=self.tenant.admin,
                                           json={"approval_threshold": limit}))
        assert r.status_code == 200, r.text
        self.topup(20_000, True, False, early)  # money to start with: most orders can be paid

    # -- rules -----------------------------------------------------------------------------------

    @rule(data=st.data(), amount=st.integers(500, 30_000),
          paid=st.sampled_from([True, True, True, False]), twice=st.booleans(),
          late=st.booleans(), early=st.sampled_from([False, False, True]))
    def top_up(self, data: st.DataObject, amount: int, paid: bool, twice: bool,
               late: bool, early: bool) -> None:
        """A top-up paid or declined (its webhook perhaps twice, or paid as soon as its
        PaymentIntent exists: the webhook races the API's answer), then perhaps an old event
        of an earlier flow again."""
        if late and self.gateway_flows:
            self.deliver_again(data)
        self.topup(amount, paid, twice, early)

    def topup(self, amount: int, paid: bool, twice: bool, early: bool = False) -> None:
        self.count("topup early" if early else "topup")
        key = self.key("topup")
        flow_id = f"{self.tenant.slug}:topup:{key}"
        request = self.post("/v1/topups", {"user_id": USER, "amount": fmt(amount),
                                           "currency": CUR}, key)
        if early:  # pay while the request is in flight: the answer is read after the webhook
            r, _ = self.run.wait(asyncio.gather(request, self.pay_early(flow_id, paid)))
        else:
            r = self.run.wait(request)
        assert r.status_code == 201, r.text
        assert r.json()["flow_id"] == flow_id, r.text
        if not early:
            self.pay_card(flow_id, r.json()["payment"]["payment_id"], paid, twice)
        self.poll(f"/v1/flows/{flow_id}", lambda f: f["state"] in ("completed", "failed"))
        self.model.topup(flow_id, amount, paid)
        self.run.got(f"topup {'completed' if paid else 'failed'}")

    @rule(method=st.sampled_from(["wallet", "card", "split"]), amount=st.integers(200, 20_000),
          share=st.integers(1, 99), paid=st.sampled_from([True, True, True, False]),
          twice=st.booleans(), report=st.booleans(), late=st.booleans(), data=st.data())
    def order(self, method: str, amount: int, share: int, paid: bool, twice: bool,
              report: bool, late: bool, data: st.DataObject) -> None:
        """An order paid from the wallet, by card or split (the card part paid or declined);
        a paid one is sometimes reported as a purchase at once (its cashback)."""
        self.count(f"order {method}")
        if late and self.gateway_flows:
            self.deliver_again(data)
        order_id = self.key("order")
        wallet = {"wallet": amount, "card": 0}.get(method, max(1, amount * share // 100))
        body = {"order_id": order_id, "user_id": USER, "amount": fmt(amount), "currency": CUR,
                "method": method}
        if method == "split":
            body["wallet_amount"] = fmt(wallet)
        expected = self.model.order(order_id, amount, wallet, paid or method == "wallet")
        r = self.run.wait(self.post("/v1/orders", body, self.key("pay")))
        self.run.got(f"order {expected}")
        if expected == "insufficient_funds":
            assert (r.status_code, r.json()["code"]) == (402, "insufficient_funds"), r.text
            return
        assert r.status_code == 201, r.text
        if method != "wallet":
            assert r.json()["state"] == "awaiting_payment", r.text
            self.pay_card(r.json()["flow_id"], r.json()["payment"]["payment_id"], paid, twice)
            self.card_flows[order_id] = r.json()["flow_id"]
        self.poll(f"/v1/orders/{order_id}", lambda o: o["status"] in ("paid", "failed"))
        if expected == "paid" and report:
            self.report(order_id, amount, linked=True)

    def report(self, order_id: str, amount: int, linked: bool) -> None:
        r = self.run.wait(self.post("/v1/purchases", {
            "order_id": order_id, "user_id": USER, "amount": fmt(amount), "currency": CUR},
            self.key("purchase")))
        assert r.status_code == 201, r.text
        self.model.purchase(order_id, amount, linked)
        state = self.model.purchases[order_id].state
        self.poll(f"/v1/purchases/{order_id}", lambda p: p["state"] == state)

    @rule(amount=st.integers(100, 20_000))
    def store_purchase(self, amount: int) -> None:
        """A purchase from the store with no order here (its cashback only)."""
        self.count("store purchase")
        self.report(self.key("store"), amount, linked=False)

    def refundable_orders(self, data: st.DataObject) -> list[str]:
        """Mostly orders with something left to refund; sometimes any (failed, refunded)."""
        left = sorted(o for o, x in self.model.orders.items() if x.refundable > 0)
        if left and data.draw(st.integers(0, 4), "any order") > 0:
            return left
        return sorted(self.model.orders)

    def draw_refund(self, data: st.DataObject, order_id: str) -> int:
        o = self.model.orders[order_id]
        left = max(o.amount - o.reserved, 1)
        how = data.draw(st.sampled_from(["part", "part", "rest", "over", "cent"]), "how much")
        if how == "over":
            return left + data.draw(st.integers(1, 500), "over by")
        return {"rest": left, "cent": 1}.get(how) or data.draw(st.integers(1, left), "part")

    @precondition(lambda self: bool(self.model.orders))
    @rule(data=st.data(), destination=st.sampled_from(["wallet", "original"]),
          gateway_ok=st.sampled_from([True, True, False]), again=st.booleans())
    def refund(self, data: st.DataObject, destination: str, gateway_ok: bool,
               again: bool) -> None:
        """One refund (any order, any amount: over what is left, of a failed order too); the
        same request again on its Idempotency-Key answers the same."""
        self.count("refund")
        order_id = self.pick(data, self.refundable_orders(data))
        amount = self.draw_refund(data, order_id)
        flow_id = self.request_refund(order_id, amount, destination, again)
        expected = self.model.refunds.get(flow_id)
        if expected is not None and expected.state == "awaiting_gateway":
            self.settle_gateway(flow_id, gateway_ok, data.draw(st.booleans(), "replay events"))

    def request_refund(self, order_id: str, amount: int, destination: str,
                       again: bool) -> str:
        """A refund request (sent twice on its key if ``again``); its flow id."""
        key = self.key("refund")
        flow_id = f"{self.tenant.slug}:refund:{key}"
        body = {"amount": fmt(amount), "currency": CUR, "destination": destination}
        expected = self.model.refund(flow_id, order_id, amount, destination)
        r = self.run.wait(self.post(f"/v1/orders/{order_id}/refunds", body, key))
        self.check_answer(r, expected)
        if again:
            r2 = self.run.wait(self.post(f"/v1/orders/{order_id}/refunds", body, key))
            self.check_answer(r2, expected)
        return flow_id

    def check_answer(self, r: httpx.Response, expected: Expected) -> None:
        self.run.got(f"refund {expected.state or expected.code}")
        if expected.code:
            assert (r.status_code, r.json().get("code")) == (expected.status, expected.code), (
                expected, r.text)
        else:
            assert (r.status_code, r.json().get("state")) == (expected.status, expected.state), (
                expected, r.text)

    def settle_gateway(self, flow_id: str, ok: bool, replay: bool = False) -> None:
        """The stand-in's refund of the card part succeeds or fails (its webhook); with
        ``replay``, its events come again out of order with its payment's: the refund's
        (newest first), the order's payment events, the refund's again."""
        async def find() -> list[dict[str, Any]]:
            deadline = time.monotonic() + WITHIN
            while True:
                found = (await self.run.ctl.get("/_standin/refunds",
                                                params={"flow_id": flow_id})).json()["data"]
                if found or time.monotonic() > deadline:
                    return list(found)
                await asyncio.sleep(0.1)
        [found] = self.run.wait(find())
        assert found["amount"] == self.model.refunds[flow_id].card, found
        self.gateway(f"/_standin/refunds/{found['id']}/{'succeed' if ok else 'fail'}")
        self.gateway_flows.append(flow_id)
        state = "refunded" if ok else "failed"
        self.poll(f"/v1/refunds/{flow_id}", lambda f: f["state"] == state)
        self.run.got(f"card refund {state}")
        if ok:
            self.model.book(flow_id)
        else:
            self.model.release(flow_id, "failed")
        if replay:
            self.count("card refund events again")
            payment = self.card_flows[self.model.refunds[flow_id].order_id]
            own, paid = self.events_of(flow_id)[::-1], self.events_of(payment)
            for event in own + paid + own:
                self.gateway(f"/_standin/events/{event['id']}/deliver")

    def events_of(self, flow_id: str) -> list[dict[str, Any]]:
        return list(self.run.wait(self.run.ctl.get("/_standin/events", params={
            "flow_id": flow_id})).json()["data"])

    @precondition(lambda self: bool(self.model.orders))
    @rule(data=st.data(), n=st.integers(2, 3), twice=st.booleans())
    def concurrent_refunds(self, data: st.DataObject, n: int, twice: bool) -> None:
        """Refunds of one order at once (to the wallet), one of them perhaps sent twice on its
        key: some serial order explains every answer; whether one needed an admin may depend
        on which of the others its request counted (they are counted under the order's lock)."""
        self.count("concurrent refunds")
        order_id = self.pick(data, self.refundable_orders(data))
        batch = [(self.key("many"), self.draw_refund(data, order_id)) for _ in range(n)]
        sent = batch + batch[:1] if twice else batch
        async def at_once() -> list[httpx.Response]:
            return list(await asyncio.gather(*(self.post(
                f"/v1/orders/{order_id}/refunds", {"amount": fmt(a), "currency": CUR,
                                                   "destination": "wallet"}, k)
                for k, a in sent)))
        answers = self.run.wait(at_once())
        if twice:
            assert (answers[0].status_code, answers[0].json()) == (
                answers[-1].status_code, answers[-1].json()), (answers[0].text, answers[-1].text)
        got = [(r.status_code, r.json().get("state") or r.json().get("code")) for r in answers]
        models = self.linearize(order_id, batch, got[:n])
        self.model, self.candidates = models[0], models
        for _status, what in got:
            self.run.got(f"refund {what}")

    def linearize(self, order_id: str, batch: list[tuple[str, int]],
                  got: list[tuple[int, str]]) -> list[Model]:
        """Every serial order's model that explains the answers (they may differ in what
        settles later, e.g. the pending cashback's intermediate amounts): the invariant keeps
        the one the stack shows."""
        before = self.model.orders[order_id].reserved
        total = sum(a for _, a in batch)
        thr = self.model.threshold
        for (_, amount), (_s, what) in zip(batch, got, strict=True):
            if what == "awaiting_approval":
                assert thr is not None and before + total >= thr, (batch, got)
            elif what == "refunded" and thr is not None:
                assert before + amount < thr, (batch, got, thr)
        found: list[Model] = []
        for order in itertools.permutations(range(len(batch))):
            model = copy.deepcopy(self.model)
            ok = True
            for i in order:
                key, amount = batch[i]
                flow_id = f"{self.tenant.slug}:refund:{key}"
                e = model.refund(flow_id, order_id, amount, "wallet",
                                 approval=got[i][1] == "awaiting_approval")
                if (e.status, e.state or e.code) != got[i]:
                    ok = False
                    break
            if ok and all(self.expected(model) != self.expected(m) for m in found):
                found.append(model)
        if found:
            return found
        raise AssertionError(f"no serial order explains {got} for {batch} (reserved {before})")

    def awaiting(self) -> list[str]:
        return sorted(f for f, r in self.model.refunds.items()
                      if r.state == "awaiting_approval")

    @precondition(lambda self: bool(self.awaiting()))
    @rule(data=st.data(), approve=st.booleans(), gateway_ok=st.booleans())
    def decide(self, data: st.DataObject, approve: bool, gateway_ok: bool) -> None:
        """An admin approves or rejects a refund above the threshold."""
        flow_id = self.pick(data, self.awaiting())
        self.decide_refund(flow_id, approve, gateway_ok)

    def decide_refund(self, flow_id: str, approve: bool, gateway_ok: bool,
                      replay: bool = False) -> None:
        self.count("refund approve" if approve else "refund reject")
        r = self.run.wait(self.post(f"/v1/refunds/{flow_id}/{'approve' if approve else 'reject'}",
                                    {"reason": "model"}, admin=True))
        assert r.status_code == 200, r.text
        if not approve:
            self.model.release(flow_id, "rejected")
            self.poll(f"/v1/refunds/{flow_id}", lambda f: f["state"] == "rejected")
            return
        expected = self.model.proceed(flow_id)
        self.poll(f"/v1/refunds/{flow_id}", lambda f: f["state"] == expected.state)
        if expected.state == "awaiting_gateway":
            self.settle_gateway(flow_id, gateway_ok, replay)

    def pending_purchases(self, linked: bool | None = None) -> list[str]:
        return sorted(o for o, p in self.model.purchases.items() if p.state == "pending"
                      and (linked is None or p.linked == linked))

    @precondition(lambda self: bool(self.pending_purchases()))
    @rule(data=st.data())
    def cancel_purchase(self, data: st.DataObject) -> None:
        """The store cancels a purchase whose cashback is pending: the hold is voided."""
        self.count("cancel purchase")
        order_id = self.pick(data, self.pending_purchases())
        r = self.run.wait(self.post(f"/v1/purchases/{order_id}/cancel", {}, self.key("cancel")))
        assert (r.status_code, r.json()["outcome"]) == (200, "signalled"), r.text
        self.model.cancel(self.model.purchases[order_id])

    @precondition(lambda self: bool(self.pending_purchases(linked=False)))
    @rule(data=st.data())
    def store_refund(self, data: st.DataObject) -> None:
        """The store refunds part of a purchase (no order here): the pending hold shrinks."""
        self.count("store refund")
        order_id = self.pick(data, self.pending_purchases(linked=False))
        p = self.model.purchases[order_id]
        amount = data.draw(st.integers(1, p.amount), "store refund")
        r = self.run.wait(self.post(f"/v1/purchases/{order_id}/refunds",
                                    {"amount": fmt(amount), "currency": CUR},
                                    self.key("store-refund")))
        assert (r.status_code, r.json()["outcome"]) == (200, "signalled"), r.text
        self.model.store_refund(p, amount)

    # -- withdrawals -----------------------------------------------------------------------------

    def withdraw_request(self, amount: int) -> str | None:
        """A bank_transfer to the user's payout account: its flow id, or None if refused."""
        refused = amount > self.model.available
        r = self.run.wait(self.post("/v1/withdrawals", {
            "user_id": USER, "amount": fmt(amount), "currency": CUR,
            "method": "bank_transfer"}, self.key("withdraw")))
        if refused:
            assert (r.status_code, r.json().get("code")) == (402, "insufficient_funds"), r.text
            self.run.got("withdrawal insufficient_funds")
            return None
        assert (r.status_code, r.json().get("state")) == (202, "awaiting_approval"), r.text
        flow_id = str(r.json()["flow_id"])
        self.model.withdraw(flow_id, amount)
        self.run.got("withdrawal awaiting_approval")
        return flow_id

    def decide_withdrawal_of(self, flow_id: str, approve: bool) -> None:
        """An admin rejects it, or approves it and the stand-in pays the payout (webhook)."""
        r = self.run.wait(self.post(f"/v1/withdrawals/{flow_id}/"
                                    f"{'approve' if approve else 'reject'}",
                                    {"reason": "model"}, admin=True))
        assert r.status_code == 200, r.text
        if approve:
            assert r.json()["decision"] == "approved", r.text
            async def find() -> list[dict[str, Any]]:
                deadline = time.monotonic() + WITHIN
                while True:
                    found = (await self.run.ctl.get("/_standin/payouts", params={
                        "flow_id": flow_id})).json()["data"]
                    if found or time.monotonic() > deadline:
                        return list(found)
                    await asyncio.sleep(0.1)
            [payout] = self.run.wait(find())
            assert payout["amount"] == self.model.withdrawals[flow_id].amount, payout
            self.gateway(f"/_standin/payouts/{payout['id']}/paid")
            self.gateway_flows.append(flow_id)
        state = "paid" if approve else "rejected"
        self.poll(f"/v1/withdrawals/{flow_id}", lambda f: f["state"] == state)
        self.model.decide_withdrawal(flow_id, approve)
        self.run.got(f"withdrawal {state}")

    @rule(data=st.data(), how=st.sampled_from(["part", "part", "over"]),
          decision=st.sampled_from(["pay", "reject", "later"]))
    def withdraw(self, data: st.DataObject, how: str, decision: str) -> None:
        """A withdrawal (perhaps above what is available), paid out, rejected or left to wait
        (its hold counts against later orders and withdrawals)."""
        self.count("withdraw")
        available = self.model.available
        amount = (data.draw(st.integers(1, available), "withdraw") if how == "part"
                  and available > 0 else available + data.draw(st.integers(1, 500), "over by"))
        flow_id = self.withdraw_request(amount)
        if flow_id is not None and decision != "later":
            self.decide_withdrawal_of(flow_id, decision == "pay")

    def pending_withdrawals(self) -> list[str]:
        return sorted(f for f, w in self.model.withdrawals.items()
                      if w.state == "awaiting_approval")

    @precondition(lambda self: bool(self.pending_withdrawals()))
    @rule(data=st.data(), approve=st.booleans())
    def decide_withdrawal(self, data: st.DataObject, approve: bool) -> None:
        """An admin decides a withdrawal left waiting."""
        self.count("decide withdrawal")
        self.decide_withdrawal_of(self.pick(data, self.pending_withdrawals()), approve)

    def deliver_again(self, data: st.DataObject) -> None:
        """An old Stripe event of one of the example's flows, delivered again (late, out of
        order with what came since): nothing changes."""
        self.count("deliver again")
        flow_id = self.pick(data, self.gateway_flows)
        events = self.run.wait(self.run.ctl.get("/_standin/events",
                                                params={"flow_id": flow_id})).json()["data"]
        if events:
            event = events[data.draw(st.integers(0, 255), "event") % len(events)]
            self.gateway(f"/_standin/events/{event['id']}/deliver")

    # -- after every step ------------------------------------------------------------------------

    def expected(self, model: Model | None = None) -> dict[str, Any]:
        m = model or self.model
        pending, available, clawed = m.cashback()
        orders = {o: (s, fmt(r), fmt(left)) for o in m.orders
                  for s, r, left in [m.order_view(o)]}
        purchases = {o: (s, fmt(c), fmt(pe), fmt(x)) for o in m.purchases
                     for s, c, pe, x in [m.purchase_view(o)]}
        system = {k: fmt(v, "PTS" if k == "points_issuance" else CUR)
                  for k, v in m.system().items() if v}
        return {"wallet": (fmt(m.posted), fmt(m.pending_in), fmt(m.pending_out),
                           fmt(m.available)),
                "points": str(m.points),
                "cashback": (fmt(pending), fmt(available), fmt(clawed)),
                "orders": orders, "purchases": purchases, "system": system,
                "events": self.expected_events(m)}

    @staticmethod
    def expected_events(m: Model) -> dict[str, Any]:
        return {
            "topups": {f: (f"topup.{s}", fmt(a)) for f, (s, a) in m.topups.items()},
            "orders": {o: f"order.{'failed' if x.status == 'failed' else 'paid'}"
                       for o, x in m.orders.items()},
            "refunds": {f: fmt(a) for f, a in m.refunds_completed().items()},
            "cashback": {o: [(t, fmt(a)) for t, a in p.events]
                         for o, p in m.purchases.items()},
            "withdrawals": {f: [(t, fmt(w.amount)) for t in w.events]
                            for f, w in m.withdrawals.items()},
        }

    async def shown(self) -> dict[str, Any]:
        """What the stack shows: the views (API) and the outbox."""
        wallet = await self.get(f"/v1/wallets/{USER}")
        by = {(b["account"], b["currency"]): b for b in wallet["balances"]}
        eur = by.get(("user_wallet", CUR), dict.fromkeys(
            ("posted", "pending_in", "pending_out", "available"), "0.00"))
        [cb] = [c for c in wallet["cashback"] if c["currency"] == CUR] or [
            {"pending": "0.00", "available": "0.00", "clawed_back": "0.00"}]
        orders = {}
        for o in self.model.orders:
            v = await self.get(f"/v1/orders/{o}")
            orders[o] = (v["status"], v["refunded"], v["refundable"])
        purchases = {}
        for o in self.model.purchases:
            v = await self.get(f"/v1/purchases/{o}")
            a = v["amounts"]
            purchases[o] = (v["state"], a["cashback"], a["cashback_pending"],
                            a["cashback_clawed_back"])
        r = await self.run.api.get("/v1/ledger/accounts", headers=self.tenant.admin)
        system = {a["account"]: a["posted"] for a in r.json()["data"]
                  if a["currency"] == ("PTS" if a["account"] == "points_issuance" else CUR)
                  and a["account"] in ("merchant_revenue", "gateway_clearing",
                                       "cashback_funding", "points_issuance",
                                       "payouts_in_transit")
                  and a["posted"] not in ("0.00", "0")}
        return {"wallet": (eur["posted"], eur["pending_in"], eur["pending_out"],
                           eur["available"]),
                "points": by.get(("user_points", "PTS"), {"posted": "0"})["posted"],
                "cashback": (cb["pending"], cb["available"], cb["clawed_back"]),
                "orders": orders, "purchases": purchases, "system": system,
                "events": await self.events()}

    async def events(self) -> dict[str, Any]:
        """The tenant's outbox by kind, checking on the way that each event comes once and
        in causal order (an order's payment before its refunds, a purchase's cashback pending
        before its available or reversed)."""
        async with self.run.sessions() as s:
            rows = (await s.execute(_EVENTS, {"t": self.tenant.id})).all()
        out: dict[str, Any] = {"topups": {}, "orders": {}, "refunds": {}, "cashback": {},
                               "withdrawals": {}}
        paid_at: dict[str, int] = {}
        for row in rows:
            p = dict(row.payload)
            if row.type.startswith("topup."):
                assert p["flow_id"] not in out["topups"], row
                out["topups"][p["flow_id"]] = (row.type, p["amount"])
            elif row.type.startswith("order."):
                assert p["order_id"] not in out["orders"], row
                out["orders"][p["order_id"]] = row.type
                paid_at[p["order_id"]] = row.id
            elif row.type == "refund.completed":
                assert p["order_id"] in paid_at, f"{row.type} before order.paid: {p}"
                assert out["orders"][p["order_id"]] == "order.paid", p
                out["refunds"][p["flow_id"]] = p["amount"]
            elif row.type.startswith("cashback."):
                out["cashback"].setdefault(p["store_order_id"], []).append(
                    (row.type, p["amount"]))
            elif row.type.startswith("withdrawal."):
                out["withdrawals"].setdefault(p["flow_id"], []).append((row.type, p["amount"]))
        return out

    async def from_the_ledger(self) -> dict[tuple[str, str], tuple[int, int, int]]:
        async with self.run.sessions() as s:
            rows = (await s.execute(_LEDGER, {"t": self.tenant.id})).all()
        return {(r[0], r[1]): (int(r[2]), int(r[3]), int(r[4])) for r in rows}

    @invariant()
    def the_stack_shows_the_model(self) -> None:
        """Flows settle asynchronously (a refund's reduction of a pending cashback, the
        events a flow records after its answer): wait until the views show the model, then
        compare (the last view, for a clear difference)."""
        models = self.candidates or [self.model]
        wants = [self.expected(m) for m in models]

        async def settle() -> dict[str, Any]:
            deadline = time.monotonic() + WITHIN
            while True:
                shown = await self.shown()
                if shown in wants or time.monotonic() > deadline:
                    return shown
                await asyncio.sleep(0.2)
        shown = self.run.wait(settle())
        if shown in wants:  # a concurrent batch's serial order, now known
            self.model = models[wants.index(shown)]
        self.candidates = []
        want = self.expected()
        for part in want:
            assert shown[part] == want[part], (part, shown[part], want[part])
        # the views are the ledger's: the wallet against sums straight from the transfers
        ledger = self.run.wait(self.from_the_ledger())
        posted, pin, pout = ledger.get(("user_wallet", CUR), (0, 0, 0))
        assert want["wallet"] == (fmt(posted), fmt(pin), fmt(pout), fmt(posted - pout)), ledger
        assert want["points"] == str(ledger.get(("user_points", "PTS"), (0, 0, 0))[0]), ledger
        for kind, amount in want["system"].items():
            cur = "PTS" if kind == "points_issuance" else CUR
            assert fmt(ledger[(kind, cur)][0], cur) == amount, (kind, ledger)
        assert self.run.wait(self.run.violations()) == self.before


def drive(database_url: str, api_url: str, standin_url: str) -> Run:
    """Run the machine on its own loop (in the test's worker thread)."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    engine = create_engine(database_url, 3)
    run = Run(loop, session_factory(engine), httpx.AsyncClient(base_url=api_url, timeout=60),
              httpx.AsyncClient(base_url=standin_url, timeout=60))
    machine = type("FlowModelMachine", (FlowMachine,), {"run": run})
    try:
        run_state_machine_as_test(machine, settings=settings(
            max_examples=EXAMPLES, stateful_step_count=STEPS, derandomize=True, database=None,
            deadline=None, suppress_health_check=list(HealthCheck),
            report_multiple_bugs=False))
    finally:
        print(f"\nflow model: {run.examples} examples, steps {dict(sorted(run.steps.items()))}, "
              f"answers {dict(sorted(run.answers.items()))}")
        loop.run_until_complete(run.api.aclose())
        loop.run_until_complete(run.ctl.aclose())
        loop.run_until_complete(engine.dispose())
        loop.close()
    return run


async def test_the_flows_match_their_model(http: httpx.AsyncClient,
                                           stripe_ctl: httpx.AsyncClient,
                                           database_url: str) -> None:
    started = time.perf_counter()
    run = await asyncio.to_thread(drive, database_url, str(http.base_url).rstrip("/"),
                                  str(stripe_ctl.base_url).rstrip("/"))
    print(f"flow model: {run.examples} examples, {time.perf_counter() - started:.1f} s")
