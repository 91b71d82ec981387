"""The ledger's reads: balances, history, cashback and campaign totals, the invariants check.

``LedgerRepository`` (db/ledger.py) inherits these, so callers keep one repository; the writes
stay in db/ledger.py. Nothing here locks or writes."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

USER_KINDS = frozenset({"user_wallet", "user_points"})

# Each check names what must never happen, and the query that finds cases of it.
INVARIANTS = {
    "transfers do not balance per tenant and currency (sum of balances != 0)":
        "SELECT tenant_id, currency, sum(posted) AS s FROM accounts "
        "GROUP BY tenant_id, currency HAVING sum(posted) <> 0",
    "cached balance differs from the sum of the account's transfers":
        "SELECT a.id, a.posted, a.pending_in, a.pending_out FROM accounts a "
        "LEFT JOIN LATERAL (SELECT "
        "coalesce(sum(amount) FILTER (WHERE state='posted' AND credit_account_id=a.id),0)"
        " - coalesce(sum(amount) FILTER (WHERE state='posted' AND debit_account_id=a.id)"
        ",0) AS posted, "
        "coalesce(sum(amount) FILTER (WHERE state='pending' AND credit_account_id=a.id)"
        ",0) AS pin, "
        "coalesce(sum(amount) FILTER (WHERE state='pending' AND debit_account_id=a.id)"
        ",0) AS pout FROM transfers WHERE debit_account_id = a.id "
        "OR credit_account_id = a.id) s ON true "
        "WHERE (a.posted, a.pending_in, a.pending_out) <> (s.posted, s.pin, s.pout)",
    "a user account is negative":
        "SELECT id, posted, pending_out FROM accounts WHERE kind = ANY(:user_kinds) "
        "AND (posted < 0 OR posted - pending_out < 0)",
    "an idempotency key is used twice":
        "SELECT tenant_id, idempotency_key FROM transfers "
        "GROUP BY tenant_id, idempotency_key HAVING count(*) > 1",
    "a transfer's accounts are in another currency or tenant":
        "SELECT t.id FROM transfers t JOIN accounts d ON d.id = t.debit_account_id "
        "JOIN accounts c ON c.id = t.credit_account_id WHERE d.currency <> t.currency "
        "OR c.currency <> t.currency OR d.tenant_id <> t.tenant_id "
        "OR c.tenant_id <> t.tenant_id",
}


@dataclass
class Balance:
    account_id: int
    kind: str
    owner_id: str
    currency: str
    posted: int
    pending_in: int
    pending_out: int

    @property
    def available(self) -> int:
        return self.posted - self.pending_out


class LedgerReads:
    session: AsyncSession | AsyncConnection

    async def balances(self, tenant_id: str, owner_id: str,
                       kinds: tuple[str, ...] = tuple(USER_KINDS)) -> list[Balance]:
        rows = await self.session.execute(
            text("SELECT id, kind, owner_id, currency, posted, pending_in, pending_out "
                 "FROM accounts WHERE tenant_id = :t AND owner_id = :o AND kind = ANY(:k) "
                 "ORDER BY currency, kind"),
            {"t": tenant_id, "o": owner_id, "k": list(kinds)},
        )
        return [Balance(*r) for r in rows]

    async def posted_balance(self, tenant_id: str, kind: str, owner_id: str,
                             currency: str) -> int:
        """One account's posted balance (0 when it does not exist yet)."""
        return next((b.posted for b in await self.balances(tenant_id, owner_id, (kind,))
                     if b.currency == currency), 0)

    async def cashback(self, tenant_id: str, owner_id: str) -> list[tuple[str, int, int, int]]:
        """(currency, pending, available, clawed back) cashback of the user's wallets: holds,
        posted cashback less what refunds clawed back, and those clawbacks."""
        rows = await self.session.execute(
            text("SELECT a.currency, "
                 "coalesce(sum(t.amount) FILTER (WHERE t.kind = 'cashback' "
                 "AND t.state = 'pending' AND t.credit_account_id = a.id), 0), "
                 "coalesce(sum(t.amount) FILTER (WHERE t.kind = 'cashback' "
                 "AND t.state = 'posted' AND t.credit_account_id = a.id), 0), "
                 "coalesce(sum(t.amount) FILTER (WHERE t.kind = 'cashback_clawback' "
                 "AND t.state = 'posted' AND t.debit_account_id = a.id), 0) "
                 "FROM accounts a JOIN LATERAL (SELECT * FROM transfers WHERE "
                 "credit_account_id = a.id UNION ALL SELECT * FROM transfers WHERE "
                 "debit_account_id = a.id) t ON t.kind IN ('cashback', 'cashback_clawback') "
                 "WHERE a.tenant_id = :t AND a.owner_id = :o AND a.kind = 'user_wallet' "
                 "GROUP BY a.currency ORDER BY a.currency"),
            {"t": tenant_id, "o": owner_id},
        )
        return [(r[0], int(r[1]), int(r[2]) - int(r[3]), int(r[3])) for r in rows]

    async def purchase_cashback(self, tenant_id: str, flow_id: str, user_id: str,
                                store_order_id: str) -> tuple[int, int, int]:
        """(pending, posted, clawed back) cashback of one purchase: its flow's cashback holds
        and what refunds of its order clawed back from the user's wallet."""
        row = (await self.session.execute(text(
            "SELECT coalesce(sum(amount) FILTER (WHERE kind = 'cashback' AND state = 'pending'), "
            "0), coalesce(sum(amount) FILTER (WHERE kind = 'cashback' AND state = 'posted'), 0), "
            "coalesce(sum(amount) FILTER (WHERE kind = 'cashback_clawback' "
            "AND state = 'posted'), 0) FROM (SELECT kind, state, amount FROM transfers "
            "WHERE tenant_id = :t AND flow_id = :f AND kind = 'cashback' UNION ALL "
            "SELECT t.kind, t.state, t.amount FROM accounts a JOIN transfers t "
            "ON t.debit_account_id = a.id WHERE a.tenant_id = :t AND a.kind = 'user_wallet' "
            "AND a.owner_id = :u AND t.kind = 'cashback_clawback' "
            "AND t.metadata->>'order_id' = :o) x"),
            {"t": tenant_id, "f": flow_id, "u": user_id, "o": store_order_id})).one()
        return int(row[0]), int(row[1]), int(row[2])

    async def system_balances(self, tenant_id: str) -> list[Balance]:
        """The tenant's system accounts, a sharded account's shards added up."""
        rows = await self.session.execute(
            text("SELECT min(id), kind, split_part(owner_id, '#', 1) AS owner, currency, "
                 "CAST(sum(posted) AS bigint), CAST(sum(pending_in) AS bigint), "
                 "CAST(sum(pending_out) AS bigint) "
                 "FROM accounts WHERE tenant_id = :t AND kind <> ALL(:k) "
                 "GROUP BY kind, owner, currency ORDER BY kind, owner, currency"),
            {"t": tenant_id, "k": list(USER_KINDS)},
        )
        return [Balance(*r) for r in rows]

    async def transfer_exists(self, tenant_id: str, idempotency_key: str) -> bool:
        return (await self.session.execute(text(
            "SELECT 1 FROM transfers WHERE tenant_id = :t AND idempotency_key = :k"),
            {"t": tenant_id, "k": idempotency_key})).first() is not None

    async def transfer_amount(self, tenant_id: str, idempotency_key: str) -> int:
        """The amount of the transfer written under this key (0 when there is none)."""
        return int((await self.session.execute(text(
            "SELECT coalesce(max(amount), 0) FROM transfers WHERE tenant_id = :t "
            "AND idempotency_key = :k"), {"t": tenant_id, "k": idempotency_key})).scalar_one())

    async def lifetime_points(self, tenant_id: str, user_id: str) -> int:
        """Every point ever credited to the user (posted), whatever was spent since."""
        return int((await self.session.execute(text(
            "SELECT coalesce(sum(t.amount), 0) FROM transfers t JOIN accounts a "
            "ON a.id = t.credit_account_id WHERE a.tenant_id = :t AND a.kind = 'user_points' "
            "AND a.owner_id = :u AND t.state = 'posted'"),
            {"t": tenant_id, "u": user_id})).scalar_one())

    async def history(self, tenant_id: str, account_ids: list[int], before_id: int | None,
                      limit: int) -> list[dict[str, Any]]:
        """Transfers touching the given accounts, newest first, keyset-paginated by id."""
        rows = await self.session.execute(
            text("SELECT t.id, t.idempotency_key, t.kind, t.state, t.amount, t.currency, "
                 "t.flow_id, t.metadata, t.created_at, t.resolved_at, "
                 "t.debit_account_id = ANY(:ids) AS outgoing, "
                 "CASE WHEN t.debit_account_id = ANY(:ids) THEN t.debit_posted_after "
                 "ELSE t.credit_posted_after END AS balance_after, "
                 "CASE WHEN t.debit_account_id = ANY(:ids) THEN ca.kind ELSE da.kind END "
                 "AS counterparty "
                 "FROM transfers t JOIN accounts da ON da.id = t.debit_account_id "
                 "JOIN accounts ca ON ca.id = t.credit_account_id "
                 "WHERE t.tenant_id = :t AND (t.debit_account_id = ANY(:ids) "
                 "OR t.credit_account_id = ANY(:ids)) AND (CAST(:before AS bigint) IS NULL "
                 "OR t.id < :before) ORDER BY t.id DESC LIMIT :lim"),
            {"t": tenant_id, "ids": account_ids, "before": before_id, "lim": limit},
        )
        return [dict(r._mapping) for r in rows]

    async def check_invariants(self, progress: Callable[[str], None] | None = None) -> list[str]:
        """Every ledger invariant (``INVARIANTS``) across the whole ledger; returns the
        violations. ``progress`` is told each check's outcome as it finishes (they scan whole
        tables)."""
        problems: list[str] = []
        for n, (name, sql) in enumerate(INVARIANTS.items(), 1):
            started = time.perf_counter()
            rows = (await self.session.execute(text(sql), {"user_kinds": list(USER_KINDS)})).all()
            if rows:
                problems.append(f"{name}: {len(rows)} case(s), e.g. {tuple(rows[0])}")
            if progress:
                progress(f"[{n}/{len(INVARIANTS)}] {'VIOLATED' if rows else 'ok'}: not {name} "
                         f"({time.perf_counter() - started:.2f} s)")
        return problems
