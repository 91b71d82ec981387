"""Payouts as Stripe has them: parameter validation, the payout's wire shape (pending, arriving
two days later) and resolving a pending payout as paid or failed.

Functions here take the `Store` and mutate its dicts; callers hold the app's lock."""

from __future__ import annotations

from typing import Literal

from stripe_standin.params import (
    amount_param,
    currency_param,
    metadata_param,
    str_param,
)
from stripe_standin.store import Store
from stripe_standin.wire import JSON, StandinError, new_id, now

METHODS = ("standard", "instant")
ARRIVAL_SECONDS = 2 * 24 * 3600
FAILURE_CODE = "account_closed"
FAILURE_MESSAGE = "The bank account has been closed"
STATEMENT_DESCRIPTOR_MAX = 22


def create(store: Store, params: JSON) -> JSON:
    """A ``pending`` payout to ``destination`` (a ``ba_``/``card_`` id, optional), arriving
    two days after creation."""
    amount = amount_param(params)
    currency = currency_param(params)
    method = str_param(params, "method") or "standard"
    if method not in METHODS:
        raise StandinError.invalid(
            f"Invalid method: must be one of {', '.join(METHODS)}",
            code="parameter_invalid", param="method")
    destination = str_param(params, "destination")
    description = str_param(params, "description")
    descriptor = str_param(params, "statement_descriptor", STATEMENT_DESCRIPTOR_MAX)
    metadata = metadata_param(params.get("metadata"))
    created = now()
    payout: JSON = {
        "id": new_id("po"),
        "object": "payout",
        "amount": amount,
        "application_fee": None,
        "application_fee_amount": None,
        "arrival_date": created + ARRIVAL_SECONDS,
        "automatic": False,
        "balance_transaction": new_id("txn"),
        "created": created,
        "currency": currency,
        "description": description,
        "destination": destination,
        "failure_balance_transaction": None,
        "failure_code": None,
        "failure_message": None,
        "livemode": False,
        "metadata": metadata,
        "method": method,
        "original_payout": None,
        "reconciliation_status": "not_applicable",
        "reversed_by": None,
        "source_type": "card",
        "statement_descriptor": descriptor,
        "status": "pending",
        "type": "card" if (destination or "").startswith("card_") else "bank_account",
    }
    store.payouts[payout["id"]] = payout
    return payout


def resolve(store: Store, po_id: str, outcome: Literal["paid", "failed"]) -> JSON:
    """Move a pending payout to ``paid`` or ``failed`` (409 when not pending)."""
    payout = store.get_payout(po_id)
    if payout["status"] != "pending":
        raise StandinError(409, "invalid_request_error",
                           f"Cannot resolve payout {po_id}: it is {payout['status']}.",
                           code="payout_unexpected_state")
    if outcome == "paid":
        payout.update(status="paid", failure_code=None, failure_message=None)
    else:
        payout.update(status="failed", failure_code=FAILURE_CODE,
                      failure_message=FAILURE_MESSAGE,
                      failure_balance_transaction=new_id("txn"))
    return payout


def flow_id_of(store: Store, po_id: str) -> str | None:
    """The payout's ``metadata.flow_id`` (None when unknown)."""
    payout = store.payouts.get(po_id)
    return (payout or {}).get("metadata", {}).get("flow_id")
