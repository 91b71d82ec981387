"""Payees (the ``payees`` table): a user's payout account at a provider (a Stripe connected
account ``acct_…``) with its onboarding status as the provider's webhooks last said, and
``payee_payouts``: the account each payout was made on. Nothing here commits: the caller owns
the transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

CONNECT = "stripe_connect"


@dataclass
class Payee:
    tenant_id: str
    user_id: str
    provider: str
    account_id: str
    payouts_enabled: bool = False
    charges_enabled: bool = False
    details_submitted: bool = False
    requirements_due: list[str] = field(default_factory=list)
    disabled_reason: str | None = None
    updated_at: datetime | None = None


@dataclass
class AccountStatus:
    """What the provider says of an account (``account.updated``, or a retrieve)."""

    payouts_enabled: bool
    charges_enabled: bool
    details_submitted: bool
    requirements_due: list[str]
    disabled_reason: str | None


_COLUMNS = ("tenant_id, user_id, provider, account_id, payouts_enabled, charges_enabled, "
            "details_submitted, requirements_due, disabled_reason, updated_at")


class PayeeRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def get(self, tenant_id: str, user_id: str, provider: str = CONNECT) -> Payee | None:
        row = (await self.session.execute(text(
            f"SELECT {_COLUMNS} FROM payees WHERE tenant_id = :t AND user_id = :u "
            "AND provider = :p"), {"t": tenant_id, "u": user_id, "p": provider})).first()
        return Payee(str(row.tenant_id), *row[1:]) if row is not None else None

    async def lock_user(self, tenant_id: str, user_id: str) -> None:
        """Serialize onboarding requests for one user (until the transaction ends)."""
        await self.session.execute(text(
            "SELECT 1 FROM users WHERE tenant_id = :t AND user_id = :u FOR UPDATE"),
            {"t": tenant_id, "u": user_id})

    async def create(self, tenant_id: str, user_id: str, account_id: str,
                     provider: str = CONNECT) -> Payee:
        """The user's account (the first one recorded wins; the stored row is returned)."""
        await self.session.execute(text(
            "INSERT INTO payees (tenant_id, user_id, provider, account_id) "
            "VALUES (:t, :u, :p, :a) ON CONFLICT DO NOTHING"),
            {"t": tenant_id, "u": user_id, "p": provider, "a": account_id})
        payee = await self.get(tenant_id, user_id, provider)
        assert payee is not None
        return payee

    async def update_status(self, account_id: str, status: AccountStatus,
                            provider: str = CONNECT) -> bool:
        """Record what the provider said of ``account_id``; False when no payee has it."""
        result = await self.session.execute(text(
            "UPDATE payees SET payouts_enabled = :pe, charges_enabled = :ce, "
            "details_submitted = :ds, requirements_due = :rd, disabled_reason = :dr, "
            "updated_at = now() WHERE provider = :p AND account_id = :a"),
            {"pe": status.payouts_enabled, "ce": status.charges_enabled,
             "ds": status.details_submitted, "rd": status.requirements_due,
             "dr": status.disabled_reason, "p": provider, "a": account_id})
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def record_payout(self, gateway: str, payout_id: str, account_id: str,
                            tenant_id: str, flow_id: str) -> None:
        await self.session.execute(text(
            "INSERT INTO payee_payouts (gateway, payout_id, account_id, tenant_id, flow_id) "
            "VALUES (:g, :p, :a, :t, :f) ON CONFLICT DO NOTHING"),
            {"g": gateway, "p": payout_id, "a": account_id, "t": tenant_id, "f": flow_id})

    async def account_of_payout(self, gateway: str, payout_id: str) -> str | None:
        return (await self.session.execute(text(
            "SELECT account_id FROM payee_payouts WHERE gateway = :g AND payout_id = :p"),
            {"g": gateway, "p": payout_id})).scalar_one_or_none()
