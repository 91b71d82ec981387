"""Payouts behind one interface: a `PayoutProvider` pays a payee through one rail, chosen by the
withdrawal's method. Stripe Connect (`stripe_connect.StripeConnectPayouts`: a transfer to the
payee's connected account, then a payout on that account) serves ``bank_transfer``. The seed's
other methods have their place here too: a mobile-money provider (``mobile_money``), PayPal
Payouts (``paypal``), a crypto custodian (``crypto``) — each a class with these methods,
registered by the gateway that owns its credentials (``payout_providers()``). Until one is, a
withdrawal by that method is refused with a clear ``gateway_refused`` ("no payout provider is
configured for method …"), at request time by the API (``contracts.gateway.PAYOUT_PROVIDED``)
and again here.

A payout names its payee by the provider's own id (a connected account ``acct_…``, never bank
details): the workflow's input and history carry only that id."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from activities.gateways import GatewayRefused, PaymentGateway
from contracts.gateway import (
    GatewayPayout,
    PayoutRef,
    PayoutRequest,
    PayoutReversal,
    PayoutReversalRequest,
)
from contracts.reconcile import SeenObject


class NoPayoutProvider(GatewayRefused):
    """No provider pays out by this method: permanent (retrying cannot help)."""


class PayoutProvider(Protocol):
    # The gateway its payouts are recorded under (``gateway_objects``) and whose webhooks
    # confirm them: "stripe" for Connect (its events come to /v1/webhooks/stripe).
    name: str
    methods: tuple[str, ...]  # the withdrawal methods it pays out

    async def create_payout(self, req: PayoutRequest) -> GatewayPayout:
        """Pay ``req.amount`` to the payee ``req.destination``; idempotent on
        ``req.idempotency_key`` (a retry creates nothing twice)."""
        ...

    async def retrieve_payout(self, ref: PayoutRef, payee: str) -> GatewayPayout: ...

    async def reverse_payout(self, req: PayoutReversalRequest) -> PayoutReversal:
        """Take back what a failed payout of ``req.flow_id`` left with the payee (Connect: the
        transfer's amount, returned to the connected account's balance) to the platform;
        idempotent on ``req.idempotency_key``, and a second call after a success reverses
        nothing more. Nothing reached the payee: ``REVERSAL_NOTHING``. Refused (e.g. the
        payee's balance no longer holds it): raises `GatewayRefused`."""
        ...

    async def list_payouts(self, since: int) -> list[SeenObject]:
        """Every payout made since ``since`` (unix seconds), for reconciliation."""
        ...


class PayoutProviders:
    """The configured providers, by method (to create a payout) and by name (to ask about
    one)."""

    def __init__(self, providers: Iterable[PayoutProvider]):
        self.by_method: dict[str, PayoutProvider] = {}
        self.by_name: dict[str, PayoutProvider] = {}
        for provider in providers:
            self.by_name.setdefault(provider.name, provider)
            for method in provider.methods:
                self.by_method.setdefault(method, provider)

    @classmethod
    def of_gateways(cls, gateways: Mapping[str, PaymentGateway]) -> PayoutProviders:
        """The providers the gateways offer (a gateway's ``payout_providers()``, sharing its
        client), in the gateways' order; a gateway without the method offers none."""
        return cls(p for gw in gateways.values()
                   for p in getattr(gw, "payout_providers", list)())

    def for_method(self, method: str) -> PayoutProvider:
        try:
            return self.by_method[method]
        except KeyError:
            raise NoPayoutProvider(
                f"no payout provider is configured for method {method!r} (configured: "
                f"{', '.join(sorted(self.by_method)) or 'none'})") from None

    def named(self, name: str) -> PayoutProvider:
        try:
            return self.by_name[name]
        except KeyError:
            raise GatewayRefused(f"no payout provider named {name!r}") from None
