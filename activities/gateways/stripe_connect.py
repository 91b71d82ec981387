"""Payouts to a payee's own bank account through Stripe Connect: a transfer from the platform
to the payee's connected account (``acct_…``, onboarded through ``POST
/v1/users/{user_id}/payout-account``), then a payout on that account (the ``Stripe-Account``
header). The connected account's ``payout.paid`` / ``payout.failed`` webhooks confirm it. Both
calls carry idempotency keys derived from the flow's (``<key>:transfer``, ``<key>:payout``),
so a retried activity creates nothing twice; their metadata holds the flow and tenant only —
Stripe forbids bank details there, and walletflow never sees them (Stripe's onboarding
collects them). A payout that fails returns its amount to the connected account's balance, not
the platform's: ``reverse_payout`` reverses the flow's transfer (found by its
``transfer_group``, the flow id; key ``<flow id>:payout:reversal``)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import stripe

from activities.gateways import GatewayRefused
from contracts.gateway import (
    PAYMENT_FAILED,
    PAYMENT_PENDING,
    PAYMENT_SUCCEEDED,
    PAYOUT_PROVIDED,
    REVERSAL_NOTHING,
    GatewayPayout,
    PayoutRef,
    PayoutRequest,
    PayoutReversal,
    PayoutReversalRequest,
)
from contracts.money import Money
from contracts.reconcile import SeenObject

ACCOUNT_ID = re.compile(r"^acct_[A-Za-z0-9]{1,64}\Z")
Call = Callable[[Awaitable[Any]], Awaitable[Any]]


def to_payout(gateway: str, obj: Any) -> GatewayPayout:
    p = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
    status = {"paid": PAYMENT_SUCCEEDED, "failed": PAYMENT_FAILED,
              "canceled": PAYMENT_FAILED}.get(p["status"], PAYMENT_PENDING)
    return GatewayPayout(gateway, p["id"], status,
                         Money(int(p["amount"]), str(p["currency"]).upper()),
                         p.get("failure_code") or p.get("failure_message"))


class StripeConnectPayouts:
    """A `PayoutProvider` (``activities/gateways/payouts.py``) on a Stripe client; ``call``
    maps the SDK's errors to `GatewayRefused` / `GatewayUnavailable`."""

    name = "stripe"
    methods = tuple(m for m, provider in PAYOUT_PROVIDED.items() if provider == "stripe_connect")

    def __init__(self, client: stripe.StripeClient, call: Call):
        self.client = client
        self._call = call

    async def create_payout(self, req: PayoutRequest) -> GatewayPayout:
        account = req.destination
        if not ACCOUNT_ID.match(account):
            raise GatewayRefused("a bank_transfer payout goes to the payee's Stripe connected "
                                 "account (acct_…), not to bank details: onboard the payee first")
        amount, currency = req.amount.amount, req.amount.currency.lower()
        metadata = {"flow_id": req.flow_id, "tenant_id": req.tenant_id}
        await self._call(self.client.v1.transfers.create_async(
            {"amount": amount, "currency": currency, "destination": account,
             "transfer_group": req.flow_id, "metadata": metadata},
            options={"idempotency_key": f"{req.idempotency_key}:transfer"}))
        payout = await self._call(self.client.v1.payouts.create_async(
            {"amount": amount, "currency": currency, "metadata": metadata,
             "description": "walletflow withdrawal"},
            options={"idempotency_key": f"{req.idempotency_key}:payout",
                     "stripe_account": account}))
        return to_payout(self.name, payout)

    async def retrieve_payout(self, ref: PayoutRef, payee: str) -> GatewayPayout:
        return to_payout(self.name, await self._call(self.client.v1.payouts.retrieve_async(
            ref.payout_id, options={"stripe_account": payee})))

    async def _transfers_of(self, flow_id: str) -> list[dict[str, Any]]:
        """The flow's transfers: its ``transfer_group``, confirmed by their metadata."""
        found: list[dict[str, Any]] = []
        params: Any = {"transfer_group": flow_id, "limit": 100}
        while True:
            page = await self._call(self.client.v1.transfers.list_async(params))
            found += [t for t in (obj.to_dict() for obj in page.data)
                      if (t.get("metadata") or {}).get("flow_id") == flow_id]
            if not page.has_more or not page.data:
                return found
            params["starting_after"] = page.data[-1]["id"]

    async def reverse_payout(self, req: PayoutReversalRequest) -> PayoutReversal:
        """Reverse what is left of the flow's transfer (all of it, once): the money a failed
        payout returned to the connected account goes back to the platform's balance."""
        transfers = await self._transfers_of(req.flow_id)
        currency = req.amount.currency
        if not transfers:  # the transfer itself never happened: nothing reached the payee
            return PayoutReversal(self.name, None, REVERSAL_NOTHING, Money(0, currency))
        if len(transfers) > 1:
            raise GatewayRefused(f"{len(transfers)} transfers belong to {req.flow_id}: "
                                 "reverse them by hand")
        transfer = transfers[0]
        left = int(transfer["amount"]) - int(transfer.get("amount_reversed") or 0)
        if left <= 0:  # reversed already (a retry after the idempotency window, or by hand)
            done = (transfer.get("reversals") or {}).get("data") or []
            return PayoutReversal(self.name, done[0]["id"] if done else None, PAYMENT_SUCCEEDED,
                                  Money(int(transfer["amount"]), currency))
        reversal = await self._call(self.client.v1.transfers.reversals.create_async(
            transfer["id"], {"amount": left, "metadata": {"flow_id": req.flow_id,
                                                          "tenant_id": req.tenant_id}},
            options={"idempotency_key": req.idempotency_key}))
        return PayoutReversal(self.name, reversal["id"], PAYMENT_SUCCEEDED,
                              Money(int(reversal["amount"]), currency))

    async def _accounts(self) -> list[str]:
        ids: list[str] = []
        params: Any = {"limit": 100}
        while True:
            page = await self._call(self.client.v1.accounts.list_async(params))
            ids += [a["id"] for a in page.data]
            if not page.has_more or not page.data:
                return ids
            params["starting_after"] = page.data[-1]["id"]

    async def list_payouts(self, since: int) -> list[SeenObject]:
        """Each connected account's payouts since ``since`` (its list call, paginated)."""
        seen: list[SeenObject] = []
        for account in await self._accounts():
            params: Any = {"created": {"gte": since}, "limit": 100}
            while True:
                page = await self._call(self.client.v1.payouts.list_async(
                    params, options={"stripe_account": account}))
                for obj in page.data:
                    raw, known = obj.to_dict(), to_payout(self.name, obj)
                    metadata = raw.get("metadata") or {}
                    seen.append(SeenObject("payout", self.name, raw["id"], known.status,
                                           known.amount, metadata.get("flow_id"),
                                           metadata.get("tenant_id"), int(raw["created"])))
                if not page.has_more or not page.data:
                    break
                params["starting_after"] = page.data[-1]["id"]
        return seen
