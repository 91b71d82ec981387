"""The ledger repository: the only place with ledger SQL.

It never commits: the caller (an activity, the API request) owns the transaction. Every write
locks the accounts it touches in ascending id order, so concurrent flows on one wallet
serialise without deadlocks; the database constraints (unique idempotency key, non-negative
user accounts, same-tenant same-currency foreign keys, immutable transfers) are the backstop.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from contracts.events import EventOut
from contracts.ledger import AccountRef, PostedTransfer, PostTransfersRequest, TransferRequest

USER_KINDS = frozenset({"user_wallet", "user_points"})
# Hot system accounts split into shards (accounts "<owner>#<n>"): every top-up, card order and
# card refund moves money through the gateway's clearing account, and one row would serialise
# them all. A transfer's shard follows from its idempotency key, so a retry finds the same one;
# reads add the shards up. Only accounts that may go negative can be sharded.
SHARDED_KINDS = {"gateway_clearing": 16}


class LedgerError(Exception):
    code = "ledger_error"


class InsufficientFunds(LedgerError):
    code = "insufficient_funds"


class LedgerConflict(LedgerError):
    """An idempotency key reused for a different movement, or an impossible state change."""

    code = "ledger_conflict"


class LedgerRace(Exception):
    """A concurrent writer committed the same idempotency key while this one waited: nothing was
    written; retry and the key's first result is returned. Retryable, so not a LedgerError."""


class AccountMissing(LedgerError):
    code = "account_missing"


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


_LOCK = text(
    "SELECT id, kind, posted, pending_in, pending_out FROM accounts "
    "WHERE id = ANY(:ids) ORDER BY id FOR UPDATE"
)
# Lock, decide and write a batch of transfers in one round trip (see migration 0008).
_POST = text(
    "SELECT idempotency_key, transfer_id, state, replayed, problem FROM ledger_post("
    "CAST(:tenant AS uuid), :flow, :pending, CAST(:keys AS text[]), CAST(:debits AS bigint[]), "
    "CAST(:credits AS bigint[]), CAST(:amounts AS bigint[]), CAST(:currencies AS text[]), "
    "CAST(:kinds AS text[]), CAST(:metas AS text[]), CAST(:events AS jsonb))"
)
# Several independent requests in one statement and one commit (migration 0009).
_POST_MANY = text(
    "SELECT request, idempotency_key, transfer_id, state, replayed, problem FROM "
    "ledger_post_many(CAST(:tenants AS uuid[]), :flows, CAST(:pending AS boolean[]), "
    "CAST(:ends AS int[]), CAST(:keys AS text[]), CAST(:debits AS bigint[]), "
    "CAST(:credits AS bigint[]), CAST(:amounts AS bigint[]), CAST(:currencies AS text[]), "
    "CAST(:kinds AS text[]), CAST(:metas AS text[]), CAST(:events AS jsonb))"
)
_COLUMNS = ("keys", "debits", "credits", "amounts", "currencies", "kinds", "metas")
_APPLY = text(
    "UPDATE accounts AS a SET posted = a.posted + v.dp, pending_in = a.pending_in + v.dpi, "
    "pending_out = a.pending_out + v.dpo "
    "FROM unnest(CAST(:ids AS bigint[]), CAST(:dp AS bigint[]), CAST(:dpi AS bigint[]), "
    "CAST(:dpo AS bigint[])) AS v(id, dp, dpi, dpo) WHERE a.id = v.id"
)


class LedgerRepository:
    def __init__(self, session: AsyncSession | AsyncConnection,
                 account_ids: dict[tuple, int] | None = None):
        """``session``: a session, or a connection (the worker's autocommit single-statement
        path); either way the caller owns the transaction."""
        self.session = session
        # Accounts are never deleted, so (tenant, kind, owner, currency) → id can be cached.
        self._ids = account_ids if account_ids is not None else {}

    # -- accounts ---------------------------------------------------------------------------

    async def account_id(self, tenant_id: str, ref: AccountRef, create: bool = True) -> int:
        key = (tenant_id, ref.kind, ref.owner_id, ref.currency)
        if key in self._ids:
            return self._ids[key]
        params = {"t": tenant_id, "k": ref.kind, "o": ref.owner_id, "c": ref.currency}
        row = (
            await self.session.execute(
                text("SELECT id FROM accounts WHERE tenant_id = :t AND kind = :k "
                     "AND owner_id = :o AND currency = :c"),
                params,
            )
        ).first()
        if row is None:
            if not create:
                raise AccountMissing(f"no {ref.kind} account for {ref.owner_id} in {ref.currency}")
            row = (
                await self.session.execute(
                    text("INSERT INTO accounts (tenant_id, kind, owner_id, currency) "
                         "VALUES (:t, :k, :o, :c) ON CONFLICT DO NOTHING RETURNING id"),
                    params,
                )
            ).first() or (
                await self.session.execute(
                    text("SELECT id FROM accounts WHERE tenant_id = :t AND kind = :k "
                         "AND owner_id = :o AND currency = :c"),
                    params,
                )
            ).one()
            return row[0]  # not cached until it is known to be committed
        self._ids[key] = row[0]
        return row[0]

    async def balances(self, tenant_id: str, owner_id: str,
                       kinds: tuple[str, ...] = tuple(USER_KINDS)) -> list[Balance]:
        rows = await self.session.execute(
            text("SELECT id, kind, owner_id, currency, posted, pending_in, pending_out "
                 "FROM accounts WHERE tenant_id = :t AND owner_id = :o AND kind = ANY(:k) "
                 "ORDER BY currency, kind"),
            {"t": tenant_id, "o": owner_id, "k": list(kinds)},
        )
        return [Balance(*r) for r in rows]

    async def cashback(self, tenant_id: str, owner_id: str) -> list[tuple[str, int, int]]:
        """(currency, pending, available) cashback credited to the user's wallets."""
        rows = await self.session.execute(
            text("SELECT t.currency, "
                 "coalesce(sum(t.amount) FILTER (WHERE t.state = 'pending'), 0), "
                 "coalesce(sum(t.amount) FILTER (WHERE t.state = 'posted'), 0) "
                 "FROM transfers t JOIN accounts a ON a.id = t.credit_account_id "
                 "WHERE a.tenant_id = :t AND a.owner_id = :o AND a.kind = 'user_wallet' "
                 "AND t.kind = 'cashback' GROUP BY t.currency ORDER BY t.currency"),
            {"t": tenant_id, "o": owner_id},
        )
        return [(r[0], int(r[1]), int(r[2])) for r in rows]

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

    # -- writes -----------------------------------------------------------------------------

    async def lock(self, tenant_id: str, refs: list[AccountRef]) -> None:
        """Lock several accounts up front (ascending id) for a transaction that makes more than
        one ledger call, so its later calls never take locks out of order."""
        if any(r.kind in SHARDED_KINDS for r in refs):
            raise ValueError("sharded accounts are locked by post(), by transfer key")
        await self._lock({await self.account_id(tenant_id, r) for r in refs})

    async def post(self, tenant_id: str, flow_id: str, transfers: list[TransferRequest],
                   pending: bool = False, events: Sequence[EventOut] = ()
                   ) -> list[PostedTransfer]:
        """Write transfers (posted, or pending holds) all-or-nothing, in one round trip
        (``ledger_post()``, migration 0008).

        A key already written returns the first result and moves nothing; the same key with a
        different movement raises LedgerConflict; a user account without enough available
        funds raises InsufficientFunds. Refusals write nothing and leave the transaction usable.
        ``events`` are recorded in the outbox with the transfers (once per event key).
        """
        rows = await self._rows(tenant_id, transfers, events)
        conn = await self._connection()
        try:
            result = (await conn.execute(_POST, {
                "tenant": tenant_id, "flow": flow_id, "pending": pending, **rows,
                "events": json.dumps(_events(events))})).all()
        except DBAPIError as e:
            if sqlstate(e) == "WL001":
                raise LedgerRace(f"a concurrent writer used one of {rows['keys']}; retry") from e
            raise
        return _outcome(result)

    async def post_many(self, requests: Sequence[PostTransfersRequest]
                        ) -> list[list[PostedTransfer] | LedgerError | LedgerRace]:
        """Several independent ``post`` requests in one statement (``ledger_post_many()``,
        migration 0009), each all-or-nothing with its own outcome, in the order given: its
        transfers, or the refusal it alone gets. A same-key race among them raises LedgerRace
        for the whole batch (nothing written); post them one by one then."""
        outcomes: list[list[PostedTransfer] | LedgerError | LedgerRace] = []
        batch: dict[str, list[Any]] = {k: [] for k in (
            "tenants", "flows", "pending", "ends", "events", *_COLUMNS)}
        sent: list[int] = []  # positions of the requests in the statement
        for req in requests:
            try:
                rows = await self._rows(req.tenant_id, req.transfers, req.events)
            except LedgerError as e:
                outcomes.append(e)
                continue
            outcomes.append([])
            sent.append(len(outcomes) - 1)
            for k in _COLUMNS:
                batch[k].extend(rows[k])
            batch["tenants"].append(req.tenant_id)
            batch["flows"].append(req.flow_id)
            batch["pending"].append(req.pending)
            batch["ends"].append(len(batch["keys"]))
            batch["events"].append(_events(req.events))
        if not sent:
            return outcomes
        conn = await self._connection()
        try:
            result = (await conn.execute(_POST_MANY, {
                **batch, "events": json.dumps(batch["events"])})).all()
        except DBAPIError as e:
            if sqlstate(e) == "WL001":
                raise LedgerRace("a concurrent writer used one of the batch's keys") from e
            raise
        by_request: dict[int, list[Any]] = {}
        for r in result:
            by_request.setdefault(r.request, []).append(r)
        for n, position in enumerate(sent, start=1):
            try:
                outcomes[position] = _outcome(by_request.get(n, []))
            except (LedgerError, LedgerRace) as e:
                outcomes[position] = e
        return outcomes

    async def _rows(self, tenant_id: str, transfers: Sequence[TransferRequest],
                    events: Sequence[EventOut]) -> dict[str, list[Any]]:
        """The transfers as the parallel arrays ``ledger_post()`` takes (account ids resolved,
        sharded accounts picked by key)."""
        if any(e.tenant_id != tenant_id for e in events):
            raise LedgerConflict("an event for another tenant")
        rows: dict[str, list[Any]] = {k: [] for k in _COLUMNS}
        for t in transfers:
            if t.amount <= 0 or t.debit.currency != t.currency or t.credit.currency != t.currency:
                raise LedgerConflict(f"malformed transfer {t.idempotency_key}")
            debit, credit = (_shard(t.debit, t.idempotency_key),
                             _shard(t.credit, t.idempotency_key))
            for k, v in (("keys", t.idempotency_key),
                         ("debits", await self.account_id(tenant_id, debit)),
                         ("credits", await self.account_id(tenant_id, credit)),
                         ("amounts", t.amount), ("currencies", t.currency), ("kinds", t.kind),
                         ("metas", json.dumps(t.metadata))):
                rows[k].append(v)
        return rows

    async def _connection(self) -> AsyncConnection:
        return (self.session if isinstance(self.session, AsyncConnection)
                else await self.session.connection())  # Core execution: the hot path

    async def resolve(self, tenant_id: str, idempotency_key: str, outcome: str) -> PostedTransfer:
        """Post or void a pending transfer (a hold). Resolving it again the same way returns the
        first result; the opposite resolution raises LedgerConflict."""
        if outcome not in ("posted", "voided"):
            raise ValueError(outcome)
        row = (
            await self.session.execute(
                text("SELECT id, debit_account_id, credit_account_id, amount, state "
                     "FROM transfers WHERE tenant_id = :t AND idempotency_key = :k"),
                {"t": tenant_id, "k": idempotency_key},
            )
        ).first()
        if row is None:
            raise LedgerConflict(f"no pending transfer {idempotency_key}")
        accounts = await self._lock({row.debit_account_id, row.credit_account_id})
        state = (
            await self.session.execute(
                text("SELECT state FROM transfers WHERE id = :id"), {"id": row.id}
            )
        ).scalar_one()
        if state == outcome:
            return PostedTransfer(row.id, idempotency_key, state, True)
        if state != "pending":
            raise LedgerConflict(f"transfer {idempotency_key} is already {state}")
        d, c = accounts[row.debit_account_id], accounts[row.credit_account_id]
        d["pending_out"] -= row.amount
        c["pending_in"] -= row.amount
        if outcome == "posted":
            d["posted"] -= row.amount
            c["posted"] += row.amount
        await self.session.execute(
            text("UPDATE transfers SET state = :s, resolved_at = now(), "
                 "debit_posted_after = :dpa, credit_posted_after = :cpa WHERE id = :id"),
            {"s": outcome, "id": row.id,
             "dpa": d["posted"] if outcome == "posted" else None,
             "cpa": c["posted"] if outcome == "posted" else None},
        )
        await self._apply(accounts)
        return PostedTransfer(row.id, idempotency_key, outcome, False)

    async def _lock(self, ids: set[int]) -> dict[int, dict[str, Any]]:
        rows = await self.session.execute(_LOCK, {"ids": sorted(ids)})
        accounts = {r.id: {"kind": r.kind, "posted": r.posted, "pending_in": r.pending_in,
                           "pending_out": r.pending_out, "_orig": (r.posted, r.pending_in,
                                                                     r.pending_out)}
                    for r in rows}
        if len(accounts) != len(ids):  # created by a transaction not committed (yet)
            raise LedgerRace(f"accounts {sorted(ids - accounts.keys())} are not visible yet")
        return accounts

    async def _apply(self, accounts: dict[int, dict[str, Any]]) -> None:
        changed = self._deltas(accounts)
        if changed["ids"]:
            await self.session.execute(_APPLY, changed)

    @staticmethod
    def _deltas(accounts: dict[int, dict[str, Any]]) -> dict[str, list[int]]:
        changed: dict[str, list[int]] = {"ids": [], "dp": [], "dpi": [], "dpo": []}
        for account_id, a in accounts.items():
            p, pi, po = a["_orig"]
            delta = (a["posted"] - p, a["pending_in"] - pi, a["pending_out"] - po)
            if any(delta):
                changed["ids"].append(account_id)
                changed["dp"].append(delta[0])
                changed["dpi"].append(delta[1])
                changed["dpo"].append(delta[2])
        return changed

    # -- reads ------------------------------------------------------------------------------

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
        """Every invariant of SPEC §4 across the whole ledger; returns the violations.
        ``progress`` is told each check's outcome as it finishes (they scan whole tables)."""
        problems: list[str] = []
        checks = {
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
        for n, (name, sql) in enumerate(checks.items(), 1):
            started = time.perf_counter()
            rows = (await self.session.execute(text(sql), {"user_kinds": list(USER_KINDS)})).all()
            if rows:
                problems.append(f"{name}: {len(rows)} case(s), e.g. {tuple(rows[0])}")
            if progress:
                progress(f"[{n}/{len(checks)}] {'VIOLATED' if rows else 'ok'}: not {name} "
                         f"({time.perf_counter() - started:.2f} s)")
        return problems


def _events(events: Sequence[EventOut]) -> list[dict[str, Any]]:
    return [{"key": e.key, "type": e.type, "payload": e.payload} for e in events]


def _outcome(result: Sequence[Any]) -> list[PostedTransfer]:
    """``ledger_post()``'s rows as transfers, or the refusal they carry, raised."""
    problem = result[0].problem if result else None
    if problem:
        code, _, detail = problem.partition(": ")
        if code == "insufficient_funds":
            raise InsufficientFunds(detail)
        if code == "conflict":
            raise LedgerConflict(detail)
        raise LedgerRace(detail)
    return [PostedTransfer(r.transfer_id, r.idempotency_key, r.state, r.replayed)
            for r in result]


def sqlstate(e: DBAPIError) -> str | None:
    """The PostgreSQL error code behind a driver error (e.g. ``42P01``, ``WL001``)."""
    orig = e.orig
    return getattr(orig, "sqlstate", None) or getattr(getattr(orig, "__cause__", None),
                                                      "sqlstate", None)


def _shard(ref: AccountRef, key: str) -> AccountRef:
    """The physical account a transfer with this key uses for ``ref``."""
    shards = SHARDED_KINDS.get(ref.kind)
    if not shards:
        return ref
    return AccountRef(ref.kind, f"{ref.owner_id}#{zlib.crc32(key.encode()) % shards}",
                      ref.currency)
