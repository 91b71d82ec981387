"""Maker-checker decisions by admins (refunds and withdrawals)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ApprovalDecision:
    """An admin's decision. From the API the admin comes from the admin key; from the Temporal
    UI or `temporal workflow signal` it is named here and checked against the tenant's admins."""

    admin: str
    approve: bool
    decision_id: str = ""
    reason: str | None = None


@dataclass
class DecisionRecord:
    admin: str
    approve: bool
    at: str
    note: str | None
    via: str  # "update" (API / CLI) or "signal" (Temporal UI / temporal workflow signal)
