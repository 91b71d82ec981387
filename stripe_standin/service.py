"""`Standin`: the state and behaviour of one stand-in app. It owns the store, the lock that
serializes mutations, faults, the call log and the webhook sender, and implements each operation:
the Stripe API's (as `Executor`s answering an `Outcome`, run by `stripe_api`) and the control
transitions (succeed/fail payments, resolve refunds and payouts) that record and send events."""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

from stripe_standin import connect, payment_intents, payouts, refunds
from stripe_standin.calls import CallLog
from stripe_standin.config import StandinConfig
from stripe_standin.faults import Faults
from stripe_standin.store import Store, StoredEvent
from stripe_standin.webhooks import WebhookSender
from stripe_standin.wire import JSON, format_amount

logger = logging.getLogger("stripe_standin")


@dataclass
class Outcome:
    status: int
    body: JSON
    events: list[StoredEvent] = field(default_factory=list)
    mutated: bool = False
    replayable: bool = True


# An API operation: (params, request_id, idempotency_key) → Outcome, run under the lock.
Executor = Callable[[JSON, str, str | None], Outcome]


def params_flow_id(params: JSON) -> str | None:
    """The request's ``metadata[flow_id]``, when it is a non-empty string."""
    metadata = params.get("metadata")
    flow_id = metadata.get("flow_id") if isinstance(metadata, dict) else None
    return flow_id if isinstance(flow_id, str) and flow_id else None


class Standin:
    """All state and behaviour of one stand-in app."""

    def __init__(self, config: StandinConfig) -> None:
        self.config = replace(config, webhook_secrets=list(config.webhook_secrets),
                              webhook_retry_delays=tuple(config.webhook_retry_delays))
        self.store = Store(config.state_file)
        self.lock = asyncio.Lock()
        self.faults = Faults()
        self.calls = CallLog()
        self.webhooks = WebhookSender(self.config, self.faults, self.calls)

    async def aclose(self) -> None:
        await self.webhooks.aclose()
        await self.store.aclose()  # the state file's final flush

    def checkout_url(self, pi_id: str) -> str:
        return f"{self.config.public_url.rstrip('/')}/checkout/{pi_id}"

    # events

    def record_event(self, type_: str, obj: JSON, request_id: str | None = None,
                     idempotency_key: str | None = None,
                     flow_hint: str | None = None) -> StoredEvent:
        return self.store.record_event(type_, obj, request_id=request_id,
                                       idempotency_key=idempotency_key, flow_hint=flow_hint,
                                       pending_webhooks=1 if self.config.webhook_url else 0)

    def dispatch(self, event: StoredEvent) -> None:
        self.webhooks.dispatch(event)

    # payment intents

    def create_payment_intent(self, params: JSON, request_id: str, key: str | None) -> Outcome:
        pi = payment_intents.create(self.store, params)
        logger.info("payment intent %s (%s %s): checkout at %s", pi["id"], pi["amount"],
                    pi["currency"], self.checkout_url(pi["id"]))
        return Outcome(200, copy.deepcopy(pi), mutated=True)

    def pi_flow_id(self, pi_id: str | None) -> str | None:
        return payment_intents.flow_id_of(self.store, pi_id)

    def retrieve_payment_intent(self, pi_id: str) -> Executor:
        def execute(params: JSON, request_id: str, key: str | None) -> Outcome:
            return Outcome(200, copy.deepcopy(self.store.get_payment_intent(pi_id)),
                           replayable=False)
        return execute

    def cancel_payment_intent(self, pi_id: str) -> Executor:
        def execute(params: JSON, request_id: str, key: str | None) -> Outcome:
            pi = payment_intents.cancel(self.store, pi_id, params)
            event = self.record_event("payment_intent.canceled", pi, request_id, key)
            return Outcome(200, copy.deepcopy(pi), [event], mutated=True)
        return execute

    async def transition(self, pi_id: str, action: Literal["succeed", "fail"]) -> JSON:
        """Succeed or fail a payment (control API and checkout page) and send its event."""
        async with self.lock:
            if action == "succeed":
                pi = payment_intents.succeed(self.store, pi_id)
                event = self.record_event("payment_intent.succeeded", pi)
            else:
                pi = payment_intents.fail(self.store, pi_id)
                event = self.record_event("payment_intent.payment_failed", pi)
            await self.store.save()
        self.dispatch(event)
        return {"payment_intent": copy.deepcopy(pi), "event": event.event}

    # refunds

    def refund_create_flow_id(self, params: JSON) -> str | None:
        """The refund's ``metadata[flow_id]``, else its payment intent's."""
        return params_flow_id(params) or self.pi_flow_id(params.get("payment_intent"))

    def refund_flow_id(self, re_id: str) -> str | None:
        refund = self.store.refunds.get(re_id)
        return self.store.refund_flow_id(refund) if refund is not None else None

    def create_refund(self, params: JSON, request_id: str, key: str | None) -> Outcome:
        refund = refunds.create(self.store, params)
        body = copy.deepcopy(refund)
        logger.info("refund %s of %s: %s %s", refund["id"], refund["payment_intent"],
                    refund["amount"], refund["currency"])
        events: list[StoredEvent] = []
        if self.config.auto_succeed_refunds:
            events = self.resolve_refund_locked(refund["id"], "succeeded")
        return Outcome(200, body, events, mutated=True)

    def retrieve_refund(self, re_id: str) -> Executor:
        def execute(params: JSON, request_id: str, key: str | None) -> Outcome:
            return Outcome(200, copy.deepcopy(self.store.get_refund(re_id)), replayable=False)
        return execute

    def resolve_refund_locked(self, re_id: str,
                              outcome: Literal["succeeded", "failed"]) -> list[StoredEvent]:
        """Resolve a pending refund (the caller holds the lock) and record its events:
        refund.updated + charge.refunded, or refund.updated + refund.failed."""
        refund = refunds.resolve(self.store, re_id, outcome)
        flow_id = self.store.refund_flow_id(refund)
        events = [self.record_event("refund.updated", refund, flow_hint=flow_id)]
        if outcome == "succeeded":
            pi = self.store.get_payment_intent(refund["payment_intent"])
            events.append(self.record_event("charge.refunded", refunds.charge_of(self.store, pi),
                                            flow_hint=flow_id))
        else:
            events.append(self.record_event("refund.failed", refund, flow_hint=flow_id))
        return events

    async def resolve_refund(self, re_id: str, outcome: Literal["succeeded", "failed"]) -> JSON:
        async with self.lock:
            events = self.resolve_refund_locked(re_id, outcome)
            refund = copy.deepcopy(self.store.get_refund(re_id))
            await self.store.save()
        for event in events:
            self.dispatch(event)
        return {"refund": refund, "events": [e.event for e in events]}

    # payouts

    def payout_flow_id(self, po_id: str) -> str | None:
        return payouts.flow_id_of(self.store, po_id)

    def create_payout(self, params: JSON, request_id: str, key: str | None) -> Outcome:
        payout = payouts.create(self.store, params)
        body = copy.deepcopy(payout)
        logger.info("payout %s: %s to %s", payout["id"],
                    format_amount(payout["amount"], payout["currency"]), payout["destination"])
        events: list[StoredEvent] = []
        if self.config.auto_pay_payouts:
            events = self.resolve_payout_locked(payout["id"], "paid")
        return Outcome(200, body, events, mutated=True)

    def retrieve_payout(self, po_id: str) -> Executor:
        def execute(params: JSON, request_id: str, key: str | None) -> Outcome:
            return Outcome(200, copy.deepcopy(self.store.get_payout(po_id)), replayable=False)
        return execute

    def resolve_payout_locked(self, po_id: str,
                              outcome: Literal["paid", "failed"]) -> list[StoredEvent]:
        """Resolve a pending payout (the caller holds the lock) and record its events:
        payout.updated + payout.paid, or payout.updated + payout.failed."""
        payout = payouts.resolve(self.store, po_id, outcome)
        account = connect.account_of_payout(self.store, po_id)  # a connected account's: Connect
        return [connect.with_account(self.record_event("payout.updated", payout), account),
                connect.with_account(self.record_event(f"payout.{outcome}", payout), account)]

    async def resolve_payout(self, po_id: str, outcome: Literal["paid", "failed"]) -> JSON:
        async with self.lock:
            events = self.resolve_payout_locked(po_id, outcome)
            payout = copy.deepcopy(self.store.get_payout(po_id))
            await self.store.save()
        for event in events:
            self.dispatch(event)
        return {"payout": payout, "events": [e.event for e in events]}
