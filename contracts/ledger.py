"""Ledger requests and results: what a flow asks the double-entry ledger to write."""

from __future__ import annotations

from dataclasses import dataclass, field

from contracts.events import EventOut

POST_TRANSFERS = "ledger.post_transfers"
RESOLVE_TRANSFERS = "ledger.resolve_transfers"


@dataclass
class AccountRef:
    kind: str  # user_wallet, user_points, gateway_clearing, merchant_revenue, points_issuance, ...
    owner_id: str  # user id for user accounts, gateway name or "tenant" for system accounts
    currency: str


@dataclass
class TransferRequest:
    idempotency_key: str  # "<flow id>:<step>[:<currency>]"
    debit: AccountRef
    credit: AccountRef
    amount: int
    currency: str
    kind: str  # business kind: topup, points_purchase, ...
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class PostTransfersRequest:
    """Several transfers written in one database transaction (all or nothing)."""

    tenant_id: str
    flow_id: str
    transfers: list[TransferRequest]
    pending: bool = False  # holds (two-phase) instead of posted transfers
    # business events recorded in the same transaction as the money movement (the outbox)
    events: list[EventOut] = field(default_factory=list)


@dataclass
class PostedTransfer:
    transfer_id: int
    idempotency_key: str
    state: str
    replayed: bool


@dataclass
class ResolveTransfersRequest:
    """Post or void pending transfers (holds), all in one database transaction."""

    tenant_id: str
    keys: list[str]
    outcome: str  # "posted" | "voided"
