"""Stripe Connect, the subset walletflow's payouts need: connected accounts (create, retrieve,
list; onboarding completed through the control API or the hosted onboarding page), account
links, transfers from the platform to a connected account (create, retrieve, list) and their
reversals (the amount back from the connected account's balance to the platform's), each
account's balance (the platform's too), and payouts made on a connected account (the
``Stripe-Account`` header).

Connect state lives in ``store.connect`` (``accounts``, ``transfers``, ``payout_accounts``:
payout id → the connected account it was made on); payouts themselves stay in
``store.payouts`` (so the payout control routes resolve them), hidden from the platform's own
payout calls. Events about a connected account's objects carry the account at the top level
(``"account": "acct_…"``), as Stripe's Connect webhooks do. Functions here mutate the store;
callers hold the app's lock."""

from __future__ import annotations

import copy
import json
from typing import Any
from urllib.parse import quote

from stripe_standin import payouts
from stripe_standin.params import (
    amount_param,
    choice_param,
    currency_param,
    int_param,
    metadata_param,
    str_param,
)
from stripe_standin.store import Store, StoredEvent
from stripe_standin.wire import JSON, StandinError, new_id, now

ACCOUNT_TYPES = ("express", "custom", "standard")
LINK_TYPES = ("account_onboarding", "account_update")
LINK_SECONDS = 300
DUE_BEFORE_ONBOARDING = ["business_type", "external_account", "tos_acceptance.date",
                         "tos_acceptance.ip"]


def state(store: Store) -> dict[str, dict[str, Any]]:
    for name in ("accounts", "transfers", "payout_accounts"):
        store.connect.setdefault(name, {})
    return store.connect


def get_account(store: Store, acct_id: str) -> JSON:
    account = state(store)["accounts"].get(acct_id)
    if account is None:
        raise StandinError.missing("account", acct_id, param="account")
    return account


def acting_account(store: Store, acct_id: str) -> JSON:
    """The account a ``Stripe-Account`` header names (403, as Stripe answers, when unknown)."""
    account = state(store)["accounts"].get(acct_id)
    if account is None:
        raise StandinError(403, "invalid_request_error",
                           f"The provided key does not have access to account '{acct_id}' (or "
                           "that account does not exist). Application access may have been "
                           "revoked.", code="account_invalid")
    return account


def create_account(store: Store, params: JSON) -> JSON:
    """A connected account, not onboarded yet: no charges, no payouts, requirements due."""
    kind = choice_param(params, "type", ACCOUNT_TYPES) or "express"
    created = now()
    account: JSON = {
        "id": new_id("acct", 16), "object": "account", "type": kind,
        "business_type": None, "capabilities": {"transfers": "inactive"},
        "charges_enabled": False, "payouts_enabled": False, "details_submitted": False,
        "country": (str_param(params, "country", 2) or "DE").upper(),
        "default_currency": "eur", "created": created,
        "email": str_param(params, "email", 500),
        "metadata": metadata_param(params.get("metadata")),
        "external_accounts": {"object": "list", "data": [], "has_more": False},
        "requirements": {"currently_due": list(DUE_BEFORE_ONBOARDING),
                         "eventually_due": list(DUE_BEFORE_ONBOARDING),
                         "past_due": [], "disabled_reason": "requirements.past_due"},
    }
    state(store)["accounts"][account["id"]] = account
    return account


def create_account_link(store: Store, params: JSON, public_url: str) -> JSON:
    acct_id = str_param(params, "account")
    if acct_id is None:
        raise StandinError.invalid("Missing required param: account.", param="account")
    get_account(store, acct_id)
    for name in ("refresh_url", "return_url"):
        if str_param(params, name, 2000) is None:
            raise StandinError.invalid(f"Missing required param: {name}.", param=name)
    choice_param(params, "type", LINK_TYPES)
    created = now()
    return {"object": "account_link", "created": created, "expires_at": created + LINK_SECONDS,
            "url": f"{public_url.rstrip('/')}/connect/onboarding/{acct_id}?"
                   f"return_url={_quote(params['return_url'])}"}


def _quote(url: str) -> str:
    return quote(url, safe="")


def complete_onboarding(store: Store, acct_id: str) -> JSON:
    """The account holder finished onboarding: a bank account, transfers and payouts on."""
    account = get_account(store, acct_id)
    if not account["external_accounts"]["data"]:
        account["external_accounts"]["data"].append({
            "id": new_id("ba"), "object": "bank_account", "account": acct_id, "last4": "3000",
            "country": account["country"], "currency": account["default_currency"],
            "default_for_currency": True, "status": "new"})
    account.update(charges_enabled=True, payouts_enabled=True, details_submitted=True,
                   business_type="individual", capabilities={"transfers": "active"},
                   requirements={"currently_due": [], "eventually_due": [], "past_due": [],
                                 "disabled_reason": None})
    return account


def restrict(store: Store, acct_id: str) -> JSON:
    """Stripe needs more information: payouts are paused until it is given."""
    account = get_account(store, acct_id)
    account.update(payouts_enabled=False, requirements={
        "currently_due": ["individual.verification.document"], "eventually_due": [],
        "past_due": ["individual.verification.document"],
        "disabled_reason": "requirements.past_due"})
    return account


def balance(store: Store, acct_id: str) -> dict[str, int]:
    """What the account holds per currency: transfers in, minus payouts not failed."""
    held: dict[str, int] = {}
    for tr in state(store)["transfers"].values():
        if tr["destination"] == acct_id:
            held[tr["currency"]] = held.get(tr["currency"], 0) + tr["amount"] - (
                tr["amount_reversed"])
    for po_id, owner in state(store)["payout_accounts"].items():
        po = store.payouts[po_id]
        if owner == acct_id and po["status"] != "failed":
            held[po["currency"]] = held.get(po["currency"], 0) - po["amount"]
    return held


def balance_object(store: Store, acct_id: str | None) -> JSON:
    """A connected account's balance, or (None) the platform's."""
    held = platform_balance(store) if acct_id is None else balance(store, acct_id)
    return {"object": "balance", "livemode": False,
            "available": [{"amount": v, "currency": c} for c, v in held.items()],
            "pending": [], "connect_reserved": []}


def platform_balance(store: Store) -> dict[str, int]:
    """The platform's, per currency: charges received, minus refunds and payouts not failed,
    minus transfers net of their reversals (never a limit: the stand-in's platform may go
    below zero, as the tests fund wallets without charges)."""
    held: dict[str, int] = {}

    def add(currency: str, amount: int) -> None:
        held[currency] = held.get(currency, 0) + amount

    for pi in store.payment_intents.values():
        add(pi["currency"], int(pi.get("amount_received") or 0))
    for re in store.refunds.values():
        if re["status"] not in ("failed", "canceled"):
            add(re["currency"], -int(re["amount"]))
    for po in payouts_of(store, None).values():
        if po["status"] != "failed":
            add(po["currency"], -int(po["amount"]))
    for tr in state(store)["transfers"].values():
        add(tr["currency"], tr["amount_reversed"] - tr["amount"])
    return held


def create_transfer(store: Store, params: JSON) -> JSON:
    """Platform → connected account; the destination must have its transfers capability."""
    amount, currency = amount_param(params), currency_param(params)
    destination = str_param(params, "destination")
    if destination is None:
        raise StandinError.invalid("Missing required param: destination.", param="destination")
    account = get_account(store, destination)
    if account["capabilities"].get("transfers") != "active":
        raise StandinError.invalid(
            "Your destination account needs to have at least one of the following capabilities "
            "enabled: transfers, crypto_transfers, legacy_payments",
            code="insufficient_capabilities_for_transfer", param="destination")
    transfer: JSON = {
        "id": new_id("tr"), "object": "transfer", "amount": amount, "amount_reversed": 0,
        "currency": currency, "created": now(), "destination": destination,
        "destination_payment": new_id("py"), "balance_transaction": new_id("txn"),
        "description": str_param(params, "description"), "livemode": False,
        "metadata": metadata_param(params.get("metadata")), "reversals": {
            "object": "list", "data": [], "has_more": False}, "reversed": False,
        "source_type": "card", "transfer_group": str_param(params, "transfer_group")}
    state(store)["transfers"][transfer["id"]] = transfer
    return transfer


def get_transfer(store: Store, tr_id: str) -> JSON:
    transfer = state(store)["transfers"].get(tr_id)
    if transfer is None:
        raise StandinError.missing("transfer", tr_id, param="id")
    return transfer


def transfers_of(store: Store, params: JSON) -> dict[str, JSON]:
    """The transfers a list call asks for (``destination``, ``transfer_group`` filters)."""
    wanted = {k: str_param(params, k) for k in ("destination", "transfer_group")}
    return {k: t for k, t in state(store)["transfers"].items()
            if all(v is None or t[k2] == v for k2, v in wanted.items())}


def create_reversal(store: Store, tr_id: str, params: JSON) -> JSON:
    """Take (part of) a transfer back: from the connected account's balance to the platform's.
    Refused when more than is left of the transfer, or than the account holds, is asked; the
    refusal is kept under the idempotency key (as Stripe keeps results once it executed)."""
    transfer = get_transfer(store, tr_id)
    left = transfer["amount"] - transfer["amount_reversed"]
    amount = int_param(params, "amount") if "amount" in params else left
    if left <= 0 or not 0 < amount <= left:
        raise StandinError(
            400, "invalid_request_error",
            f"Transfer {tr_id} has only {left} left to reverse ({amount} requested).",
            code="transfer_already_reversed" if left <= 0 else "amount_too_large",
            param="amount", replayable=True)
    currency = transfer["currency"]
    if amount > balance(store, transfer["destination"]).get(currency, 0):
        raise StandinError(
            400, "invalid_request_error",
            "Insufficient funds in the connected account's balance to reverse this transfer.",
            code="balance_insufficient", param="amount", replayable=True)
    reversal: JSON = {
        "id": new_id("trr"), "object": "transfer_reversal", "amount": amount,
        "currency": currency, "created": now(), "transfer": tr_id,
        "balance_transaction": new_id("txn"), "destination_payment_refund": new_id("pyr"),
        "metadata": metadata_param(params.get("metadata")), "source_refund": None}
    transfer["reversals"]["data"].insert(0, reversal)
    transfer["amount_reversed"] += amount
    transfer["reversed"] = transfer["amount_reversed"] >= transfer["amount"]
    return reversal


def create_payout(store: Store, acct_id: str, params: JSON) -> JSON:
    """A payout of the connected account's balance to its bank account."""
    account = acting_account(store, acct_id)
    if not account["payouts_enabled"]:
        raise StandinError.invalid("Payouts are disabled for this account: complete its "
                                   "onboarding first.", code="account_payouts_disabled")
    amount, currency = amount_param(params), currency_param(params)
    if amount > balance(store, acct_id).get(currency, 0):
        raise StandinError.invalid(
            "You have insufficient funds in your Stripe account for this transfer.",
            code="balance_insufficient", param="amount")
    banks = account["external_accounts"]["data"]
    payout = payouts.create(store, {**params, "destination": params.get("destination")
                                    or (banks[0]["id"] if banks else None)})
    payout["source_type"] = "bank_account"
    state(store)["payout_accounts"][payout["id"]] = acct_id
    return payout


def account_of_payout(store: Store, po_id: str) -> str | None:
    return state(store)["payout_accounts"].get(po_id)


def payouts_of(store: Store, acct_id: str | None) -> dict[str, JSON]:
    """The payouts one account sees: a connected account's own, or (None) the platform's."""
    owners = state(store)["payout_accounts"]
    return {k: v for k, v in store.payouts.items() if owners.get(k) == acct_id}


def visible_payout(store: Store, acct_id: str | None, po_id: str) -> JSON:
    """A payout retrieved as ``acct_id`` (None: the platform); another account's is 404."""
    payout = store.get_payout(po_id)
    if account_of_payout(store, po_id) != acct_id:
        raise StandinError.missing("payout", po_id, param="id")
    return payout


def with_account(event: StoredEvent, acct_id: str | None) -> StoredEvent:
    """A Connect event: the connected account at the top level, in the signed payload too."""
    if acct_id is not None:
        event.event["account"] = acct_id
        event.payload = json.dumps(event.event, indent=2)
    return event


def snapshot(obj: JSON) -> JSON:
    return copy.deepcopy(obj)
